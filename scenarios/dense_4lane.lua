-- Dense 4-lane highway (built with the builder functions instead of a returned table).
road { lanes = 4, lane_width = 3.6, length = 1200, speed_limit = 31, speed_limits = { 27, 29, 31, 33 } }
traffic { density = { 40, 38, 34, 30 }, flow = 1700, truck_share = 0.1 }
ego { lane = 2, x = 200, speed = 16, goal = 215 }
episode { steps = 400, seed = 2 }
name "dense-4lane"
on_step(function(sim, t)
  if t == 0 then metric("vehicles_at_start", sim:nvehicles()) end
end)
