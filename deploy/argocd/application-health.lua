-- Argo CD health check for Applications, for an app of apps with sync waves (the operator's
-- Application in wave 0, the tenants' in wave 1). Install it with argocd-cm.yaml beside this file.
-- Argo CD 3 leaves resources that do not exist yet out of an Application's health, so a child can
-- read Healthy while its first sync is still creating the operator's Deployment. The wave must wait
-- for the child to be synced and healthy:
--   health Degraded                                  -> Degraded (the child says why)
--   an operation running, or sync status not Synced  -> Progressing
--   otherwise                                        -> the child's own health
local hs = {status = "Progressing", message = "Waiting for the Application's first sync"}
if obj.status == nil then
  return hs
end
local health = obj.status.health or {}
local sync = obj.status.sync or {}
local operation = obj.status.operationState or {}
if health.status == "Degraded" then
  hs.status = "Degraded"
  hs.message = health.message or "Degraded"
  return hs
end
if obj.operation ~= nil or operation.phase == "Running" then
  hs.message = "Sync running"
  return hs
end
if sync.status ~= "Synced" then
  hs.message = "Sync status " .. tostring(sync.status)
  return hs
end
if health.status ~= nil then
  hs.status = health.status
  hs.message = health.message or ""
end
return hs
