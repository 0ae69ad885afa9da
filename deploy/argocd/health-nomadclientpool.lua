-- Argo CD health check for NomadClientPool (nomadpool.dev/v1alpha1).
-- Argo CD runs it with the object as the global `obj` (Lua 5.1) and shows
-- the status it returns. Installed through argocd-cm: see argocd-cm.yaml.
--
--   Degraded     Stalled (only a human can clear it: a token Nomad denies,
--                a missing group, an invalid spec) or Degraded (Nomad
--                unreachable, an action that failed; may pass by itself)
--   Progressing  retirements or a scale-up in flight, retirements waiting
--                for a budget, clients joining, or a spec not yet observed
--   Suspended    disruption.paused or dryRun holds retirements that are due
--   Healthy      settled: as many clients as desired, all taking work
local hs = {status = "Progressing", message = "waiting for the operator to report on this pool"}

local status = obj.status
if status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

-- Conditions by type; one written for an older generation says nothing of
-- this one and is left out.
local conditions = {}
for _, c in ipairs(status.conditions or {}) do
  if c.observedGeneration == nil or generation == nil or c.observedGeneration == generation then
    conditions[c.type] = c
  end
end
local function is_true(type_)
  local c = conditions[type_]
  return c ~= nil and c.status == "True"
end
local function says(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

if is_true("Stalled") then
  hs.status = "Degraded"
  hs.message = says(conditions["Stalled"])
elseif is_true("Degraded") then
  hs.status = "Degraded"
  hs.message = says(conditions["Degraded"])
elseif is_true("Reconciling") then
  hs.message = says(conditions["Reconciling"])
elseif is_true("Ready") then
  local ready = conditions["Ready"]
  if ready.reason == "Paused" or ready.reason == "DryRun" then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
  hs.message = says(ready)
elseif conditions["Ready"] ~= nil then
  hs.message = says(conditions["Ready"])
end
return hs
