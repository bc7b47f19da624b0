import Foundation
import RedisQueue
import XCTest

/// A private redis-server for one test (RedisServer.temporary: unix socket only, AOF on, a
/// fresh folder removed afterwards), restartable on the same data.
final class RedisServerFixture {
    let server: RedisServer
    var password: String? { server.options.password }
    var dir: URL { server.dataDir }
    var socketPath: String { server.socketPath }

    init(password: String? = nil) throws { server = try RedisServer.temporary(password: password) }

    enum Auth {
        case fixture, none
        case password(String)
    }

    func endpoint(auth: Auth = .fixture, db: Int = 0) -> RedisEndpoint {
        var e = RedisEndpoint.unix(socketPath, db: db)
        switch auth {
        case .fixture: e.password = password
        case .none: e.password = nil
        case .password(let p): e.password = p
        }
        return e
    }

    func client(
        auth: Auth = .fixture, db: Int = 0,
        options: RedisClient.Options = RedisClient.Options(connectTimeout: 2, commandTimeout: 5)
    ) throws -> RedisClient {
        try RedisClient(endpoint: endpoint(auth: auth, db: db), options: options)
    }

    func start() throws { try server.start() }
    func stop() { server.stop() }
    func restart() throws { try server.restart() }
}
