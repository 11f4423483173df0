-- A cut-in: at t = 4 s a car in the left lane changes into the ego's lane 8 m (bumper to
-- bumper) ahead of it, 1 m/s slower, over 2 s.
local gap = 8
at(4.0, function(sim)
  local id, err = sim:cut_in { gap = gap, from = "left", dv = -1.0, duration = 2.0, clear = true }
  assert(id, err)
  metric("cutin_id", id)
  metric("cutin_gap_requested", gap)
end)
return {
  name = "cut-in",
  road = { lanes = 3, length = 1000, speed_limit = 29 },
  traffic = { density = 12, flow = 900 },
  ego = { lane = 1, x = 150, speed = 20, goal = 300 },
  episode = { steps = 300, seed = 5 },
}
