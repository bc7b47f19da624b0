/// The Lua scripts of the queue protocol. Each runs atomically on the server; together
/// they guarantee that only the holder of the current epoch can change a job's outcome.
/// Semantics of each are documented in manifests/QUEUE.md.
///
/// Shared conventions: a job hash holds `state` (queued|running|done|dead), `epoch` (bumped
/// on every take, never reset), `owner`, `attempts`, `entry` (its current stream entry id).
/// "Fenced" means: job.epoch == ARGV epoch and job.state == running and job.owner == ARGV owner.
enum QueueScripts {
    /// KEYS: meta, jobs, job  ARGV: jobID, payload  → 1 new, 0 already present.
    static let submit = RedisScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOBATCH batch does not exist') end
        if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
        local id = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
        redis.call('HSET', KEYS[3], 'payload', ARGV[2], 'state', 'queued', 'attempts', 0, 'epoch', 0, 'entry', id)
        redis.call('HINCRBY', KEYS[1], 'total', 1)
        return 1
        """)

    /// KEYS: meta, jobs, job, lease, dead, running, ckpt  ARGV: jobID, entryID, owner
    /// → {'ok', epoch, attempts, payload, checkpoint|false} or
    /// {'busy'|'finished'|'superseded'|'gone'|'dead'|'paused'|'later', detail}
    static let take = RedisScript(
        """
        local function drop_entry()
          redis.call('XACK', KEYS[2], 'workers', ARGV[2])
          redis.call('XDEL', KEYS[2], ARGV[2])
        end
        local st = redis.call('HGET', KEYS[3], 'state')
        if not st then drop_entry() return {'gone', ''} end
        if st == 'done' or st == 'dead' then drop_entry() return {'finished', st} end
        local notBefore = tonumber(redis.call('HGET', KEYS[3], 'not_before') or '')
        if notBefore and st == 'queued' then
          local now = redis.call('TIME')
          local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
          if nowMs < notBefore then
            -- Backing off after a failure: to the tail, so the jobs behind it go first.
            if redis.call('HGET', KEYS[3], 'entry') == ARGV[2] then
              drop_entry()
              redis.call('HSET', KEYS[3], 'entry', redis.call('XADD', KEYS[2], '*', 'job', ARGV[1]))
            end
            return {'later', notBefore - nowMs}
          end
        end
        if redis.call('HGET', KEYS[1], 'paused') == '1' then
          -- Paused: hand the entry back as a fresh one at the tail, deliverable on resume
          -- (left pending here, it would wait out a lease first).
          if redis.call('HGET', KEYS[3], 'entry') == ARGV[2] and st == 'queued' then
            drop_entry()
            redis.call('HSET', KEYS[3], 'entry', redis.call('XADD', KEYS[2], '*', 'job', ARGV[1]))
          end
          return {'paused', ''}
        end
        if redis.call('HGET', KEYS[3], 'entry') ~= ARGV[2] then drop_entry() return {'superseded', ''} end
        local lease = redis.call('GET', KEYS[4])
        if lease then
          local holder = string.match(lease, '^(.*)|%d+$')
          if holder ~= ARGV[3] then return {'busy', holder or lease} end
        end
        -- Every number is checked before anything is written: a damaged record fails whole.
        local rawMax = redis.call('HGET', KEYS[1], 'max_attempts') or '3'
        local rawLease = redis.call('HGET', KEYS[1], 'lease_ms') or '60000'
        local maxA, leaseNum = tonumber(rawMax), tonumber(rawLease)
        if not maxA or maxA < 1 or not leaseNum or leaseNum < 1 then
          return {'badbatch', 'max_attempts ' .. rawMax .. ', lease_ms ' .. rawLease}
        end
        local rawAttempts = redis.call('HGET', KEYS[3], 'attempts') or '0'
        local rawEpoch = redis.call('HGET', KEYS[3], 'epoch') or '0'
        local attempts = tonumber(rawAttempts)
        local damaged = nil
        if not attempts or not tonumber(rawEpoch) then
          damaged = 'damaged job record: attempts ' .. rawAttempts .. ', epoch ' .. rawEpoch
          attempts = maxA
        end
        if attempts >= maxA then
          local seen = ''
          local last = redis.call('HGET', KEYS[3], 'last_progress')
          if last then
            local w, st, tot = string.match(last, '^(.*)|(%d+)|(%d+)$')
            if w then seen = '; last heard of on ' .. w .. ' at step ' .. st .. '/' .. tot end
          end
          local err = damaged or redis.call('HGET', KEYS[3], 'error')
            or ('abandoned: lease lapsed on all ' .. attempts .. ' attempts' .. seen)
          redis.call('XADD', KEYS[5], '*', 'job', ARGV[1], 'error', err, 'attempts', attempts, 'worker', ARGV[3],
            'epoch', rawEpoch)
          redis.call('HSET', KEYS[3], 'state', 'dead', 'owner', '')
          drop_entry()
          redis.call('DEL', KEYS[4], KEYS[7])
          redis.call('SREM', KEYS[6], ARGV[1])
          redis.call('HINCRBY', KEYS[1], 'failed', 1)
          return {'dead', err}
        end
        attempts = redis.call('HINCRBY', KEYS[3], 'attempts', 1)
        local epoch = redis.call('HINCRBY', KEYS[3], 'epoch', 1)
        redis.call('SET', KEYS[4], ARGV[3] .. '|' .. epoch, 'PX', math.floor(leaseNum))
        redis.call('HSET', KEYS[3], 'state', 'running', 'owner', ARGV[3])
        redis.call('SADD', KEYS[6], ARGV[1])
        local ckpt = redis.call('GET', KEYS[7])
        return {'ok', epoch, attempts, redis.call('HGET', KEYS[3], 'payload'), ckpt}
        """)

    /// Fenced progress: only the current holder's write lands, so a stale owner can never show
    /// a phantom step, and the job remembers its last progress for a dead letter's cause.
    /// KEYS: job, progress  ARGV: jobID, owner, epoch, "<owner>|<step>|<total>"  → 1 written, 0 fenced off.
    static let progress = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[1], 'epoch', 'state', 'owner')
        if cur[1] ~= ARGV[3] or cur[2] ~= 'running' or cur[3] ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
        redis.call('HSET', KEYS[1], 'last_progress', ARGV[4])
        return 1
        """)

    /// KEYS: meta, jobs, job, lease  ARGV: owner, epoch  → 1 renewed, 0 not the current holder.
    /// Also re-claims the stream entry (resetting its idle time) so XAUTOCLAIM leaves it alone.
    static let renew = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[3], 'epoch', 'state', 'owner', 'entry')
        if cur[1] ~= ARGV[2] or cur[2] ~= 'running' or cur[3] ~= ARGV[1] then return 0 end
        local mine = ARGV[1] .. '|' .. ARGV[2]
        local lease = redis.call('GET', KEYS[4])
        if lease and lease ~= mine then return 0 end
        local leaseMs = redis.call('HGET', KEYS[1], 'lease_ms') or '60000'
        redis.call('SET', KEYS[4], mine, 'PX', leaseMs)
        redis.call('XCLAIM', KEYS[2], 'workers', ARGV[1], 0, cur[4], 'JUSTID')
        return 1
        """)

    /// KEYS: job, ckpt  ARGV: owner, epoch, step, bytes  → 1 written, 0 stale epoch.
    static let checkpoint = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[1], 'epoch', 'state', 'owner')
        if cur[1] ~= ARGV[2] or cur[2] ~= 'running' or cur[3] ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[2], ARGV[4])
        redis.call('HSET', KEYS[1], 'ckpt_step', ARGV[3], 'ckpt_epoch', ARGV[2])
        return 1
        """)

    /// KEYS: meta, jobs, job, lease, results, running, ckpt
    /// ARGV: owner, epoch, jobID, field1, value1, ...  → 1 published, 2 already published by
    /// this very epoch (a retried call), 0 stale epoch.
    static let publish = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[3], 'epoch', 'state', 'owner', 'entry')
        if cur[2] == 'done' and cur[1] == ARGV[2] and cur[3] == ARGV[1] then return 2 end
        if cur[1] ~= ARGV[2] or cur[2] ~= 'running' or cur[3] ~= ARGV[1] then return 0 end
        local fields = {'job', ARGV[3], 'epoch', ARGV[2], 'worker', ARGV[1]}
        for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
        local rid = redis.call('XADD', KEYS[5], '*', unpack(fields))
        redis.call('HSET', KEYS[3], 'state', 'done', 'result', rid)
        redis.call('XACK', KEYS[2], 'workers', cur[4])
        redis.call('XDEL', KEYS[2], cur[4])
        redis.call('DEL', KEYS[4], KEYS[7])
        redis.call('SREM', KEYS[6], ARGV[3])
        redis.call('HINCRBY', KEYS[1], 'done', 1)
        return 1
        """)

    /// KEYS: meta, jobs, job, dead, lease, running, ckpt  ARGV: jobID, entryID → 1 cancelled,
    /// 0 already finished. A queued or running job ends as a dead letter marked `cancelled`;
    /// a running job's owner is fenced off (its next progress, renew or publish is refused).
    static let cancel = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[3], 'state', 'entry', 'epoch', 'attempts', 'owner')
        if cur[2] == ARGV[2] then
          redis.call('XACK', KEYS[2], 'workers', ARGV[2])
          redis.call('XDEL', KEYS[2], ARGV[2])
        end
        if cur[1] ~= 'queued' and cur[1] ~= 'running' then return 0 end
        redis.call('XADD', KEYS[4], '*', 'job', ARGV[1], 'error', 'cancelled', 'cancelled', '1',
          'attempts', cur[4] or '0', 'worker', cur[5] or '', 'epoch', cur[3] or '0')
        redis.call('HSET', KEYS[3], 'state', 'dead', 'owner', '', 'error', 'cancelled')
        redis.call('DEL', KEYS[5], KEYS[7])
        redis.call('SREM', KEYS[6], ARGV[1])
        redis.call('HINCRBY', KEYS[1], 'failed', 1)
        return 1
        """)

    /// KEYS: meta, jobs, job, dead  ARGV: jobID, deadEntryID → 1 re-queued, 0 not dead (the
    /// dead entry is dropped either way). Attempts restart from 0; the epoch keeps counting,
    /// so writes of any earlier owner stay fenced off.
    static let requeue = RedisScript(
        """
        redis.call('XDEL', KEYS[4], ARGV[2])
        if redis.call('HGET', KEYS[3], 'state') ~= 'dead' then return 0 end
        local nid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
        redis.call('HSET', KEYS[3], 'state', 'queued', 'owner', '', 'entry', nid, 'attempts', 0)
        redis.call('HDEL', KEYS[3], 'error', 'last_progress', 'not_before')
        redis.call('HINCRBY', KEYS[1], 'failed', -1)
        return 1
        """)

    /// KEYS: job  ARGV: owner, epoch, error → 1 recorded, 0 stale epoch. The job keeps running
    /// (or waits out its lease); the error is what a dead letter will say if it never finishes.
    static let annotate = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[1], 'epoch', 'state', 'owner')
        if cur[1] ~= ARGV[2] or cur[2] ~= 'running' or cur[3] ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'error', ARGV[3])
        return 1
        """)

    /// KEYS: meta, jobs, job, lease, dead, running, ckpt
    /// ARGV: owner, epoch, jobID, error, permanent(0|1), backoffMs (re-queued jobs wait this long)
    /// → 1 re-queued, 2 dead-lettered, 0 stale epoch. The checkpoint is dropped either way:
    /// a failure may come from the saved state itself, so the retry starts clean.
    static let fail = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[3], 'epoch', 'state', 'owner', 'entry', 'attempts')
        if cur[1] ~= ARGV[2] or cur[2] ~= 'running' or cur[3] ~= ARGV[1] then return 0 end
        local maxA = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '3')
        local attempts = tonumber(cur[5] or '0')
        redis.call('HSET', KEYS[3], 'error', ARGV[4])
        redis.call('XACK', KEYS[2], 'workers', cur[4])
        redis.call('XDEL', KEYS[2], cur[4])
        redis.call('DEL', KEYS[4], KEYS[7])
        redis.call('SREM', KEYS[6], ARGV[3])
        if ARGV[5] == '1' or attempts >= maxA then
          redis.call('XADD', KEYS[5], '*', 'job', ARGV[3], 'error', ARGV[4], 'attempts', attempts, 'worker', ARGV[1], 'epoch', ARGV[2])
          redis.call('HSET', KEYS[3], 'state', 'dead', 'owner', '')
          redis.call('HINCRBY', KEYS[1], 'failed', 1)
          return 2
        end
        local nid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[3])
        redis.call('HSET', KEYS[3], 'state', 'queued', 'owner', '', 'entry', nid)
        local backoff = tonumber(ARGV[6] or '0') or 0
        if backoff > 0 then
          local now = redis.call('TIME')
          local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
          redis.call('HSET', KEYS[3], 'not_before', nowMs + math.floor(backoff))
        end
        return 1
        """)

    /// KEYS: jobs, job, lease, running  ARGV: owner, epoch, jobID → 1 released, 0 stale epoch.
    /// Graceful shutdown: re-queue at once with the attempt refunded; the checkpoint stays so
    /// the next taker resumes.
    static let release = RedisScript(
        """
        local cur = redis.call('HMGET', KEYS[2], 'epoch', 'state', 'owner', 'entry')
        if cur[1] ~= ARGV[2] or cur[2] ~= 'running' or cur[3] ~= ARGV[1] then return 0 end
        redis.call('XACK', KEYS[1], 'workers', cur[4])
        redis.call('XDEL', KEYS[1], cur[4])
        local nid = redis.call('XADD', KEYS[1], '*', 'job', ARGV[3])
        redis.call('HSET', KEYS[2], 'state', 'queued', 'owner', '', 'entry', nid)
        redis.call('HINCRBY', KEYS[2], 'attempts', -1)
        redis.call('DEL', KEYS[3])
        redis.call('SREM', KEYS[4], ARGV[3])
        return 1
        """)

    /// KEYS: workers  ARGV: worker, jobID ('' when idle), ttlMs → server time in ms.
    /// Server time, so heartbeats from machines with skewed clocks compare fairly.
    static let heartbeat = RedisScript(
        """
        local t = redis.call('TIME')
        local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', ms) .. '|' .. ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        -- Workers not heard of for the retention period are dropped from the list.
        local all = redis.call('HGETALL', KEYS[1])
        for i = 1, #all, 2 do
          local seen = tonumber(string.match(all[i + 1], '^(%d+)|') or '')
          if not seen or ms - seen > tonumber(ARGV[4]) then redis.call('HDEL', KEYS[1], all[i]) end
        end
        return ms
        """)
}
