-- Argo CD health check for the videoanalyzer.io kinds (VideoAnalyzerAccount, CustomerKey, KeyVault).
-- Install it with argocd-cm.yaml beside this file. It reads the kstatus conventions the operator
-- follows: Ready, Reconciling, Stalled and status.observedGeneration.
--   Ready=True                                  -> Healthy
--   observedGeneration behind metadata.generation -> Progressing (the operator has not seen the change)
--   Reconciling=True, or VaultDegraded=True      -> Progressing (work under way, a vault being retried)
--   Stalled=True, state KeyInaccessible or Error -> Degraded (a person must act; the message says what)
local hs = {status = "Progressing", message = "Waiting for the video-analyzer operator"}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition("Ready")
local stalled = condition("Stalled")
local reconciling = condition("Reconciling")
local degraded = condition("VaultDegraded")
local state = obj.status.state

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if state == "KeyInaccessible" or state == "Error" then
  hs.status = "Degraded"
  hs.message = state .. (ready ~= nil and (" (" .. describe(ready) .. ")") or "")
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling)
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.message = "Vault degraded: " .. describe(degraded)
  return hs
end
if ready ~= nil then
  if ready.status == "True" then
    hs.status = "Healthy"
    hs.message = ready.message or ""
    return hs
  end
  if ready.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(ready)
    return hs
  end
  hs.message = describe(ready)
end
return hs
