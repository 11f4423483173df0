-- A stalled vehicle: at t = 3 s the ego's leader breaks down and stops in the lane (at
-- 4 m/s^2); traffic and the ego must stop or go around it.
at(3.0, function(sim)
  local l = sim:leader()
  assert(l, "no leader to stall")
  assert(sim:stall(l.id, 4.0))
  metric("stalled_id", l.id)
end)
on_step(function(sim, t)
  if t > 3 then
    for _, v in ipairs(sim:vehicles()) do
      if v.stalled then metric("stalled_speed", v.speed); metric("stalled_x", v.x) end
    end
  end
end)
return {
  name = "stalled-vehicle",
  road = { lanes = 3, length = 1000, speed_limit = 27 },
  traffic = { density = 15, flow = 1000 },
  ego = { lane = 1, x = 150, speed = 18, goal = 400 },
  episode = { steps = 400, seed = 8 },
}
