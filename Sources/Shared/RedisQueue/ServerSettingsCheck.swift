import Foundation

/// What a shared Redis must be for batches to survive: persistent (AOF or RDB save points) and
/// never evicting keys. Read with CONFIG GET; a server that refuses CONFIG (an ACL user without
/// it, a managed service) is not second-guessed: no warning.
public enum ServerSettingsCheck {
    public static func warnings(_ client: RedisClient) -> [String] {
        func get(_ name: String) -> String? {
            guard let reply = try? client.command(["CONFIG", "GET", name]), let a = reply.array, a.count == 2
            else { return nil }
            return a[1].string
        }
        var out: [String] = []
        if let aof = get("appendonly"), let save = get("save"), aof != "yes",
            save.trimmingCharacters(in: .whitespaces).isEmpty
        {
            out.append(
                "Redis at \(client.endpoint) does not persist (appendonly no, no save points): a restart loses "
                    + "every batch; turn AOF on (ops/redis.conf)")
        }
        if let policy = get("maxmemory-policy"), policy != "noeviction" {
            out.append(
                "Redis at \(client.endpoint) evicts keys when full (maxmemory-policy \(policy)): jobs and results "
                    + "can vanish; use noeviction (ops/redis.conf)")
        }
        return out
    }
}
