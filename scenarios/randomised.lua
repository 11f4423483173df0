-- A randomised scenario: the road, demand and ego are drawn from distributions with the
-- seed (--seed S, default 1; math.random is seeded with it), so the same seed gives the
-- same scenario and different seeds give different ones.
local lanes = math.random(2, 5)
local limit = 22 + 10 * math.random()
local density = 10 + 30 * math.random()
local ego_lane = math.random(0, lanes - 1)
metric("drawn_lanes", lanes)
metric("drawn_limit", limit)
metric("drawn_density", density)
-- a random event: a brake of a random leader at a random time
at(3 + 5 * math.random(), function(sim)
  local l = sim:leader()
  if l then sim:brake(l.id, 2 + 4 * math.random(), 2.0) end
end)
return {
  name = "randomised",
  road = { lanes = lanes, length = 1000, speed_limit = limit },
  traffic = { density = density, flow = 800 + 800 * math.random(), truck_share = 0.2 * math.random(),
              car = { T = 1.2 + 0.6 * math.random(), politeness = 0.5 * math.random() } },
  ego = { lane = ego_lane, x = 150, speed = 0.6 * limit },
  episode = { steps = 300, seed = SEED or 1 },
}
