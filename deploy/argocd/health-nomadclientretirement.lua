-- Argo CD health check for NomadClientRetirement (nomadpool.dev/v1alpha1).
-- Argo CD runs it with the object as the global `obj` (Lua 5.1). Installed
-- through argocd-cm: see argocd-cm.yaml.
--
--   Degraded     Stalled: the target names no client of the pool
--   Progressing  pending (waiting for the pool or its budget) or in flight
--   Healthy      finished: Retired, or Cancelled (the spec no longer asked
--                for it; the client is back in service)
local hs = {status = "Progressing", message = "waiting for the pool to take this retirement"}

local status = obj.status
if status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "waiting for the pool to observe generation " .. tostring(generation)
  return hs
end

local conditions = {}
for _, c in ipairs(status.conditions or {}) do
  conditions[c.type] = c
end
local phase = status.phase or "Pending"
local message = status.message or ""

local stalled = conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
elseif phase == "Retired" or phase == "Cancelled" then
  hs.status = "Healthy"
  hs.message = phase .. ": " .. message
else
  hs.message = phase .. ": " .. message
end
return hs
