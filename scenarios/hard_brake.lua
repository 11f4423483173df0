-- A hard brake ahead: at t = 5 s the ego's leader (a car placed 25 m ahead at the start)
-- brakes at 7 m/s^2 for 2.5 s. Reports its speed before and after.
local lead_id
on_step(function(sim, t)
  if t == 0 then
    lead_id = assert(sim:spawn { gap = 25, dv = 0 })
    metric("lead_id", lead_id)
  end
end)
at(5.0, function(sim)
  local v = sim:vehicle(lead_id)
  metric("lead_speed_before", v.speed)
  assert(sim:brake(lead_id, 7.0, 2.5))
end)
at(7.6, function(sim)
  local v = sim:vehicle(lead_id)
  if v then metric("lead_speed_after", v.speed) end
  metric("ego_gap_after", sim:gap() or -1)
end)
return {
  name = "hard-brake",
  road = { lanes = 3, length = 1200, speed_limit = 29 },
  traffic = { density = 8, flow = 600 },
  ego = { lane = 1, x = 150, speed = 22, goal = 400 },
  episode = { steps = 300, seed = 6 },
}
