-- A truck-heavy mix: 35 % trucks (longer, slower, gentler), trucks kept right by a strong
-- keep-right bias. Reports the share of trucks on the road.
every(10.0, function(sim)
  local n, trucks = 0, 0
  for _, v in ipairs(sim:vehicles()) do
    n = n + 1
    if v.type == "truck" then trucks = trucks + 1 end
  end
  metric("truck_share_observed", trucks / math.max(n, 1))
end)
return {
  name = "truck-heavy",
  road = { lanes = 3, length = 1000, speed_limit = 29 },
  traffic = { density = 25, flow = 1400, truck_share = 0.35,
              truck = { length = 14, length_std = 2, v0_factor = 0.8, keep_right = 0.8 } },
  ego = { lane = 1, x = 150, speed = 18, goal = 300 },
  episode = { steps = 400, seed = 9 },
}
