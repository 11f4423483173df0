-- A lane closure: the left lane (2) ends at x = 600 m over a 80 m taper (work zone); traffic
-- must merge right before it. At t = 20 s an event also closes the right lane from 900 m.
at(20.0, function(sim)
  assert(sim:close_lane(0, 900, 60))
  metric("closed_right_at", sim:time())
end)
return {
  name = "lane-closure",
  road = { lanes = 3, length = 1100, speed_limit = 27, closures = { { lane = 2, x = 600, taper = 80 } } },
  traffic = { density = 22, flow = 1100 },
  ego = { lane = 1, x = 100, speed = 18, goal = 450 },
  episode = { steps = 600, seed = 4 },
}
