-- harmony-alerts done inside Fluent Bit: the same normalize + filter + dedupe, as a Lua filter.
-- Used only by the benchmark (benchmarks/cases/fluentbit.py) for a like-for-like ratio.
--
--   fluent-bit -i stdin -F lua -p script=harmony_alerts.lua -p call=harmony_alert -m '*' -o ...
--
-- Same rules as harmony-alerts' defaults: keep an event when its type is phishing, malware,
-- alert or dlp, or its severity is >= 4; alert_reasons says why; dedupe on tenant + eventId
-- (in memory only, unbounded: no eviction, no persistence — harmony-alerts does both).
--
-- Needs `enable_flb_null true` on the filter: otherwise a JSON null reaches Lua as nil, which
-- deletes the key, and the alert (and the original event inside it) loses its null fields.
-- tests/pipelines/test_fluentbit_lua.py checks the output equals harmony-alerts' record for record.

local KEEP_TYPES = { phishing = true, malware = true, alert = true, dlp = true }
local MIN_SEVERITY = 4
local LABELS = { "Very Low", "Low", "Medium", "High", "Critical" }
local SEVERITY_NAMES = {
    ["very low"] = 1, lowest = 1, low = 2, medium = 3, high = 4, critical = 5, highest = 5,
}
local ORIGIN = { source = "checkpoint_harmony", vendor = "Check Point", product = "Harmony Email & Collaboration" }
local seen = {}
-- JSON null (flb_null exists when the filter sets enable_flb_null); a nil value would drop the key.
local NULL = flb_null

local function nullable(value)
    if value == nil then return NULL end
    return value
end

local function severity_of(value)
    if type(value) == "number" then
        local n = math.floor(value)
        if n >= 1 and n <= 5 then return n end
        return nil
    end
    if type(value) ~= "string" then return nil end
    local n = tonumber(value)
    if n then return severity_of(n) end
    return SEVERITY_NAMES[string.lower(value)]
end

-- days since 1970-01-01 of a civil date (Howard Hinnant's algorithm): no os.time/timezone.
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

-- "2024-05-01T10:00:00.123456+02:00" / "...Z" / no fraction -> epoch milliseconds
local function epoch_ms(text)
    if type(text) ~= "string" then return nil end
    local y, mo, d, h, mi, s, rest = string.match(text, "^(%d+)-(%d+)-(%d+)[T ](%d+):(%d+):(%d+)(.*)$")
    if not y then return nil end
    local ms = 0
    local frac, tz = string.match(rest, "^%.(%d+)(.*)$")
    if frac then
        ms = math.floor(tonumber(string.sub(frac .. "000", 1, 3)))
        rest = tz
    end
    local offset_secs = 0
    local sign, oh, om = string.match(rest, "^([+-])(%d%d):?(%d%d)$")
    if sign then
        offset_secs = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
    end
    local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
    local secs = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s) - offset_secs
    return secs * 1000 + ms
end

function harmony_alert(tag, timestamp, event)
    local event_type = event["type"]
    local severity = severity_of(event["severity"])
    local reasons = {}
    if type(event_type) == "string" and KEEP_TYPES[event_type] then
        reasons[#reasons + 1] = "type:" .. event_type
    end
    if severity and severity >= MIN_SEVERITY then
        reasons[#reasons + 1] = "severity>=" .. MIN_SEVERITY
    end
    if #reasons == 0 then
        return -1, timestamp, event
    end
    local tenant = event["customerId"]
    local event_id = event["eventId"]
    local key = tostring(tenant) .. ":" .. tostring(event_id)
    if seen[key] then
        return -1, timestamp, event
    end
    seen[key] = true
    local alert = {
        timestamp = nullable(epoch_ms(event["eventCreated"])),
        msg_class = "checkpoint_harmony_security_event",
        msg_origin = ORIGIN,
        tenantid = nullable(tenant),
        event_id = nullable(event_id),
        event_type = nullable(event_type),
        event_state = nullable(event["state"]),
        saas = nullable(event["saas"]),
        confidence = nullable(event["confidenceIndicator"]),
        description = nullable(event["description"]),
        sender = nullable(event["senderAddress"]),
        entity_id = nullable(event["entityId"]),
        entity_link = nullable(event["entityLink"]),
        severity = nullable(severity),
        severity_label = nullable(severity and LABELS[severity] or nil),
        alert_reasons = reasons,
        dedupe_key = key,
        checkpoint_harmony = event,
    }
    -- harmony-alerts' `details`: the benchmark corpus's `data` holds no known sentence, so only
    -- the attachment's MD5 is ever there (the data parser runs in harmony-alerts all the same)
    local md5 = event["attachmentMd5"]
    if type(md5) == "string" and md5 ~= "" then
        alert.details = { attachment_md5 = md5 }
    end
    return 2, timestamp, alert
end
