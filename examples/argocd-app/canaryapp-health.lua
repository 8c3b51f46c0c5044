-- Argo CD health of a canary.atze.io/v1 CanaryApp, from the status the canaryapp reconciler writes.
-- Configured under resource.customizations.health.canary.atze.io_CanaryApp in argocd-cm (argocd-cm-patch.yaml).
--   Progressing: no status yet, a spec change not yet observed, or a rollout under way
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
