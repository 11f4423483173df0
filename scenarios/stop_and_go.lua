-- A stop-and-go wave: dense traffic in which the vehicle ~60 m ahead of the ego brakes
-- hard to near standstill every 20 s; the waves reach the ego, which slows down and speeds
-- up again. Reports the ego's minimum speed and the largest speed after that minimum.
local vmin, vmax_after = math.huge, 0
every(20.0, function(sim)
  local ego = sim:ego()
  local best, bestd
  for _, v in ipairs(sim:vehicles()) do
    local d = v.x - ego.x
    if v.lane == ego.lane and d > 30 and d < 120 and (not bestd or math.abs(d - 60) < bestd) then
      best, bestd = v, math.abs(d - 60)
    end
  end
  if best then sim:brake(best.id, 6.0, 3.0) end
end, { start = 5.0 })
on_step(function(sim, t)
  if t < 2 then return end
  local s = sim:ego().speed
  if s < vmin then vmin, vmax_after = s, s end
  if s > vmax_after then vmax_after = s end
  metric("ego_min_speed", vmin)
  metric("ego_max_speed_after_min", vmax_after)
end)
return {
  name = "stop-and-go",
  road = { lanes = 2, length = 1500, speed_limit = 25 },
  traffic = { density = 30, flow = 1500, car = { politeness = 1.0, a_thr = 2.0 } },
  ego = { lane = 0, x = 200, speed = 12, goal = 1000 },
  episode = { steps = 700, seed = 7 },
}
