-- I-80-like: 6 main lanes at 65 mph with an on-ramp whose auxiliary lane tapers away; ramp
-- vehicles must merge left. Counts merges out of the ramp lane (index 6).
local merged, seen_on_ramp = 0, {}
on_step(function(sim)
  for _, v in ipairs(sim:vehicles()) do
    if v.lane == 6 and not v.changing then seen_on_ramp[v.id] = true
    elseif seen_on_ramp[v.id] and v.lane ~= 6 then
      seen_on_ramp[v.id] = nil
      merged = merged + 1
      metric("ramp_merges", merged)
    end
  end
end)
return {
  name = "onramp-6lane",
  road = { lanes = 6, lane_width = 3.7, length = 800, speed_limit = 29.06,
           onramp = { x_start = 80, merge_end = 420, taper = 70, speed_limit = 22 } },
  traffic = { density = 28, flow = 1700, ramp_density = 15, ramp_flow = 700, truck_share = 0.05, moto_share = 0.02 },
  ego = { lane = 1, x = 100, speed = 18, goal = 400 },
  episode = { steps = 600, seed = 3 },
}
