-- hold_release.lua — wrk script: single-seat holds through the tixgrid
-- gateway, each followed by the release of its seat, with Bearer tokens.
--
--   wrk -t T -c C -d D -s tests/bench/hold_release.lua http://HOST:PORT \
--       -- SEAT_FIRST SEATS TOKEN:BOOKING,BOOKING,... (one per thread)
--
-- SEAT_FIRST is an API seat id (partition_id << 32 | seat).  Thread i
-- cycles over SEATS seats from SEAT_FIRST + i * SEATS, so no two threads
-- touch the same seat, and uses the i-th TOKEN:BOOKINGS argument: its own
-- user's token and bookings, one more than the thread has connections
-- (tests/bench/gateway_bench.sh makes them): wrk calls request() once before
-- the run to check the script, and that hold, never sent, keeps its booking.
--
-- wrk calls request() whenever one of a thread's connections is free and
-- response() with each answer, without saying which request it answers, so
-- strict alternation on a connection is not available.  The pairing goes
-- through the answers instead: response() queues the release of the seat a
-- hold took, and request() sends a queued release first, else a hold of
-- the thread's next seat that is not held.  A booking has at most one hold
-- in flight, so the booking_id of a hold's answer says which hold was
-- answered and the seat comes from the thread's own record (the answer's
-- seat list is not relied on: it may list the booking's other seats too).
-- A release's answer names the seat it released.
--
-- A hold starts only when no release waits, that is when every seat the
-- thread holds is on one of its other connections: a thread never holds
-- more seats than it has connections, so with a booking per connection a
-- booking with no hold in flight and room always exists.  A booking holds at
-- most 16 seats (a 17th is `409 too_many_seats`); a seat counts against its
-- booking until its release is answered.
--
-- A non-2xx answer names neither booking nor seat: it is counted by status
-- and error code, its booking and seat are never used again, and the run is
-- invalid.  With too few bookings a second hold goes to a booking with one
-- in flight; its answer cannot be paired, and counts as failed ("unpaired").
-- done() prints one line for scripts:
--   hold_release requests=N holds=N releases=N failed=N socket_errors=N
--                seconds=S statuses=409 seat_taken:2,503 busy:1

local BOOKING_SEATS_MAX = 16 -- TG_BOOKING_SEATS_MAX

-- Main state: the threads, for done().
local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

-- Thread state (globals, read by done() through thread:get).
holds, releases, failed, statuses = 0, 0, 0, {}

local headers, bookings, room, busy = {}, {}, {}, {}
local holding = {} -- booking id → seat of its hold in flight, or UNPAIRED
local UNPAIRED = "unpaired" -- two holds were in flight: answers cannot be paired
local seat_first, seat_count, seat_next, booking_next = 0, 0, 0, 1
local queue, queue_head, queue_tail = {}, 1, 0 -- releases waiting: {booking, seat}

function init(args)
    local mine = args[3 + id]
    local token, list = (mine or ""):match("^([^:]+):([%d,]+)$")
    seat_count = tonumber(args[2] or "")
    if token == nil or seat_count == nil or tonumber(args[1] or "") == nil then
        error("hold_release.lua: arguments are SEAT_FIRST SEATS TOKEN:BOOKING,... per thread;"
              .. " thread " .. id .. " has none")
    end
    seat_first = tonumber(args[1]) + id * seat_count
    headers["Authorization"] = "Bearer " .. token
    headers["Content-Type"] = "application/json"
    for b in list:gmatch("%d+") do
        table.insert(bookings, b)
        room[b] = BOOKING_SEATS_MAX
    end
end

local function body(booking, seat)
    return '{"booking_id":' .. booking .. ',"seat_ids":[' .. seat .. ']}'
end

-- The thread's next seat that is not held, or nil (only after failures).
local function free_seat()
    for _ = 1, seat_count do
        local seat = string.format("%.0f", seat_first + seat_next)
        seat_next = (seat_next + 1) % seat_count
        if not busy[seat] then
            return seat
        end
    end
end

-- The next booking with room and no hold in flight, or nil (only after
-- failures, or with fewer bookings than connections).
local function booking_free()
    for _ = 1, #bookings do
        local b = bookings[booking_next]
        booking_next = booking_next % #bookings + 1
        if room[b] > 0 and not holding[b] then
            return b
        end
    end
end

function request()
    if queue_head <= queue_tail then
        local r = queue[queue_head]
        queue[queue_head] = nil
        queue_head = queue_head + 1
        return wrk.format("PATCH", "/api/seats/release", headers, body(r[1], r[2]))
    end
    -- With no seat or booking free (after failures, or with too few
    -- bookings) a hold still goes out, and its answer counts as failed.
    local seat = free_seat() or string.format("%.0f", seat_first)
    local booking = booking_free()
    if booking == nil then
        booking = bookings[1]
        holding[booking] = UNPAIRED
    else
        holding[booking] = seat
    end
    busy[seat] = true
    room[booking] = room[booking] - 1
    return wrk.format("PATCH", "/api/seats/select", headers, body(booking, seat))
end

function response(status, _, answer)
    if status < 200 or status > 299 then
        local why = status .. " " .. (answer:match('"code":"([%w_]+)"') or "?")
        failed = failed + 1
        statuses[why] = (statuses[why] or 0) + 1
        return
    end
    local booking = answer:match('"booking_id":(%d+)')
    if answer:find('"released":', 1, true) then
        local seat = answer:match('"id":(%d+)')
        busy[seat] = nil
        room[booking] = room[booking] + 1
        releases = releases + 1
    elseif holding[booking] and holding[booking] ~= UNPAIRED then
        queue_tail = queue_tail + 1
        queue[queue_tail] = {booking, holding[booking]}
        holding[booking] = nil
        holds = holds + 1
    else
        failed = failed + 1
        statuses[UNPAIRED] = (statuses[UNPAIRED] or 0) + 1
    end
end

function done(summary)
    local h, r, f, by_status = 0, 0, 0, {}
    for _, thread in ipairs(threads) do
        h = h + thread:get("holds")
        r = r + thread:get("releases")
        f = f + thread:get("failed")
        for code, n in pairs(thread:get("statuses")) do
            by_status[code] = (by_status[code] or 0) + n
        end
    end
    local parts = {}
    for code, n in pairs(by_status) do
        table.insert(parts, code .. ":" .. n)
    end
    table.sort(parts)
    local e = summary.errors
    io.write(string.format("hold_release requests=%d holds=%d releases=%d failed=%d"
                           .. " socket_errors=%d seconds=%.3f statuses=%s\n",
                           summary.requests, h, r, f, e.connect + e.read + e.write + e.timeout,
                           summary.duration / 1e6, #parts > 0 and table.concat(parts, ",") or "-"))
end
