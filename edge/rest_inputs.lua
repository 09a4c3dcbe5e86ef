-- Enum fields of REST requests in the forms traders write them (timeframe=1h,
-- "side": "buy", status=open, period=month), turned into the contract's enum names
-- (TIMEFRAME_H1, TRADE_ACTION_BUY, ...) before Envoy's JSON transcoder reads them: the
-- transcoder knows only the names. gRPC clients are not affected (they send numbers).
--
-- Query parameters and JSON bodies (POST, PATCH, PUT) of /api/ requests are read; a
-- value no form matches is refused here with 400 naming the field and the accepted
-- values, which the transcoder's own message ("invalid value ... for type ...") does
-- not. Enum numbers ("2") and names already in the contract's form pass unchanged.
--
-- FIELDS (field name -> enum) and ENUMS (enum -> its accepted forms) are generated from
-- the contracts by edge/rest_inputs.py (see there); do not edit the tables by hand.

--TABLES--

local function normalize(text)
  return (string.gsub(string.lower(text), "-", "_"))
end

-- The enum name for `text` in `field`, or nil and why not (naming the field as
-- `label`, e.g. "timeframes[1]").
local function resolve(field, text, label)
  if string.match(text, "^%d+$") then
    return text
  end
  local enum = ENUMS[FIELDS[field]]
  local name = enum.values[normalize(text)]
  if name then
    return name
  end
  return nil, string.format('%s: "%s" is not %s; use one of %s', label, text, enum.what, enum.accepted)
end

local function url_decode(text)
  text = string.gsub(text, "+", " ")
  return (string.gsub(text, "%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- The query with every enum field's value in the contract's form; nil, why, field
-- for a value that is none of the accepted forms.
local function rewrite_query(query)
  local parts = {}
  for part in string.gmatch(query, "[^&]+") do
    local key, value = string.match(part, "^([^=]*)=(.*)$")
    if key then
      local field = string.match(url_decode(key), "([%w_]+)$")
      if field and FIELDS[field] then
        local name, problem = resolve(field, url_decode(value), field)
        if problem then
          return nil, problem, field
        end
        part = key .. "=" .. name
      end
    end
    parts[#parts + 1] = part
  end
  return table.concat(parts, "&")
end

-- The JSON body with every enum field's string value (or list of them) in the
-- contract's form; nil, why, field for a value that is none of the accepted forms.
local function rewrite_json(body)
  local problem, bad
  local function replace(field, text, label)
    local name, why = resolve(field, text, label)
    if why and not problem then
      problem, bad = why, label
    end
    return name or text
  end
  for field in pairs(FIELDS) do
    body = string.gsub(body, '("' .. field .. '"%s*:%s*)"([^"]*)"', function(key, text)
      return key .. '"' .. replace(field, text, field) .. '"'
    end)
    body = string.gsub(body, '("' .. field .. '"%s*:%s*%[)([^%]]*)%]', function(key, items)
      local index = -1
      items = string.gsub(items, '"([^"]*)"', function(text)
        index = index + 1
        return '"' .. replace(field, text, field .. "[" .. index .. "]") .. '"'
      end)
      return key .. items .. "]"
    end)
  end
  if problem then
    return nil, problem, bad
  end
  return body
end

-- 400 with the reason; Envoy's local reply config turns it into a google.rpc.Status
-- JSON body with a BadRequest naming the field (from x-aifx-invalid-field).
local function refuse(handle, problem, field)
  handle:headers():replace("x-aifx-invalid-field", field)
  handle:respond({[":status"] = "400", ["content-type"] = "text/plain"}, problem)
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path") or ""
  if string.sub(path, 1, 5) ~= "/api/" then
    return
  end
  local question = string.find(path, "?", 1, true)
  if question then
    local query, problem, field = rewrite_query(string.sub(path, question + 1))
    if problem then
      return refuse(handle, problem, field)
    end
    headers:replace(":path", string.sub(path, 1, question) .. query)
  end
  local method = headers:get(":method")
  if method == "POST" or method == "PATCH" or method == "PUT" then
    local buffer = handle:body()
    if buffer and buffer:length() > 0 then
      local text = buffer:getBytes(0, buffer:length())
      local body, problem, field = rewrite_json(text)
      if problem then
        return refuse(handle, problem, field)
      end
      if body ~= text then
        buffer:setBytes(body)
        if headers:get("content-length") then
          headers:replace("content-length", tostring(#body))
        end
      end
    end
  end
end
