-- NGSIM replay: vehicle 3 of the I-80 sample (US DOT, 5:15-5:30 pm) becomes the ego. It
-- follows its logged trajectory during the 2 s warm-up, then the controller drives.
-- The log path can be given as the first script argument; reading it needs
-- --allow-read on its folder (e.g. --allow-read ../shared/data/ngsim).
local file = (args and args[1]) or "../shared/data/ngsim/i80-0515-0530-vehicle3.txt"
on_step(function(sim, t)
  local e = sim:ego()
  if t < 0.05 then metric("ego_start_x", e.x); metric("ego_start_y", e.y) end
  metric("ego_x", e.x)
  metric("ego_speed", e.speed)
end)
return {
  name = "ngsim-replay",
  replay = { file = file, ego = 3, smoothing = 1.5, lanes = 6, lane_width_ft = 12 },
  ego = { goal = 200, controller = "idm" },
  episode = { steps = 90, n_cond = 20 },
}
