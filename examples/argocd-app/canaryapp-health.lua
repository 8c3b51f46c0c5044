-- Argo CD health of a canary.atze.io/v1 CanaryApp, from the status the canaryapp reconciler writes.
-- Configured under resource.customizations.health.canary.atze.io_CanaryApp in argocd-cm (argocd-cm-patch.yaml).
-- A status with the kstatus conditions (Reconciling, Stalled, Ready: exactly one True, for the generation the
-- status observed) is read from them, as Flux reads it:
--   Progressing: no status yet, a spec change not yet observed, or Reconciling (a rollout under way)
--   Suspended:   Reconciling because the rollout is paused on request (reason Paused)
--   Healthy:     Ready (the spec's release is rolled out and the cluster matches)
--   Degraded:    Stalled (rolled back, refused by a policy or as invalid, a name conflict)
-- A status written before those conditions existed is read from its phase:
--   Healthy:     Ready or Succeeded, and the Ready condition (the primary serves traffic), if present, is True
--   Degraded:    the last rollout was rolled back (Failed; the message names the image and why), or the
--                Ready condition is False
-- Argo CD runs it with gopher-lua (Lua 5.1); it uses base functions only (ipairs, tostring), nothing that
-- depends on which libraries an Argo CD version loads.
local hs = {}
local status = obj.status

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the canaryapp reconciler to report a status"
  return hs
end

local generation = obj.metadata.generation or 0
if (status.observedGeneration or 0) < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the canaryapp reconciler to observe generation " .. tostring(generation)
  return hs
end

local message = status.message or ""
local phase = status.phase

local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  conditions[condition.type] = condition
end
local stalled, reconciling = conditions["Stalled"], conditions["Reconciling"]
if stalled ~= nil or reconciling ~= nil then
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = stalled.message or message
  elseif reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    if reconciling.reason == "Paused" then
      hs.status = "Suspended"
    end
    hs.message = reconciling.message or message
  elseif conditions["Ready"] ~= nil and conditions["Ready"].status == "True" then
    hs.status = "Healthy"
    hs.message = message
  else
    hs.status = "Progressing"
    hs.message = message
  end
  return hs
end

if phase == "Initializing" or phase == "Progressing" or phase == "Promoting" then
  hs.status = "Progressing"
  hs.message = message
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  if message == "" then
    message = "The last rollout was rolled back"
  end
  hs.message = message
  return hs
end

if phase == "Ready" or phase == "Succeeded" then
  local ready = nil
  for _, condition in ipairs(status.conditions or {}) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
  if ready == nil or ready.status == "True" then
    hs.status = "Healthy"
    hs.message = message
  elseif ready.status == "False" then
    hs.status = "Degraded"
    hs.message = "Primary not ready: " .. (ready.message or ready.reason or "")
  else
    hs.status = "Progressing"
    hs.message = "Waiting for the primary to become ready"
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown CanaryApp phase " .. tostring(phase)
return hs
