-- Dense 3-lane highway: 35 vehicles per km and lane (about 100 vehicles on 1 km), the ego in
-- the middle lane. Reports the vehicle count at the start and the traffic's mean speed.
local n0
on_step(function(sim, t)
  if not n0 then
    n0 = sim:nvehicles()
    metric("vehicles_at_start", n0)
  end
end)
every(5.0, function(sim)
  local sum, n = 0, 0
  for _, v in ipairs(sim:vehicles()) do sum = sum + v.speed; n = n + 1 end
  metric("traffic_mean_speed", n > 0 and sum / n or 0)
end)
return {
  name = "dense-3lane",
  road = { lanes = 3, lane_width = 3.7, length = 1000, speed_limit = 29 },
  traffic = { density = 35, flow = 1600, truck_share = 0.08 },
  ego = { lane = 1, x = 150, speed = 15, goal = 215, controller = "idm" },
  episode = { dt = 0.1, steps = 400, seed = 1, n_cond = 20 },
}
