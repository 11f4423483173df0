-- A headless program: an IDM episode on a dense road, then the ego's raster as a tensor.
local ew = require("egoworld")
local w <close> = ew.world { road = { lanes = 3, length = 1000 }, traffic = { density = 30 },
                             ego = { lane = 1, x = 150, speed = 15 } }
w:reset(tonumber(args[1] or "1"))
local m = ew.episode(w, "idm", { steps = 200, goal = 215 })
local obs = w:observe()
print(string.format("status=%s distance=%.1f vehicles=%d obs=%s ego_pixels=%.1f", m.status, m.distance,
                    w:nvehicles(), tostring(obs), obs:sum()))
assert(m.status == "success", m.status)
