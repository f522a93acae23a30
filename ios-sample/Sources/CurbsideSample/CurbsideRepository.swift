// The one place the sample talks to the bindings: blocking calls on a detached task (never the
// main actor), network and photo work through the bindings' async methods, changes as an
// AsyncSequence.
import Foundation
import Curbside

/// Forwards the store's change listener into an AsyncStream.
final class ChangeForwarder: ChangeListener, @unchecked Sendable {
    private let continuation: AsyncStream<[RequestChange]>.Continuation

    init(_ continuation: AsyncStream<[RequestChange]>.Continuation) {
        self.continuation = continuation
    }

    func onChange(changes: [RequestChange]) throws {
        continuation.yield(changes)
    }
}

/// Forwards sync progress to a closure (called on the sync's thread).
final class ProgressForwarder: SyncObserver, @unchecked Sendable {
    private let report: @Sendable (SyncProgress) -> Void

    init(_ report: @escaping @Sendable (SyncProgress) -> Void) {
        self.report = report
    }

    func onProgress(progress: SyncProgress) throws {
        report(progress)
    }
}

extension CurbsideStore {
    /// Every commit's changed requests, local edits and synced changes alike. Listening stops
    /// when the consuming task ends.
    func changes() -> AsyncStream<[RequestChange]> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            let forwarder = ChangeForwarder(continuation)
            guard let handle = try? self.addListener(listener: forwarder) else {
                continuation.finish()
                return
            }
            continuation.onTermination = { [weak self] _ in
                _ = self?.removeListener(handle: handle)
            }
        }
    }
}

/// Runs a short blocking call off the caller's actor.
func offMain<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await Task.detached(priority: .userInitiated, operation: work).value
}

struct ReportRow: Identifiable, Sendable {
    var id: String { draft.id }
    let draft: Draft
    let unread: Int
}

final class CurbsideRepository: @unchecked Sendable {
    let store: CurbsideStore

    init(path: String) throws {
        store = try CurbsideStore.open(path: path)
    }

    static func inAppSupport() throws -> CurbsideRepository {
        let dir = try FileManager.default.url(
            for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        return try CurbsideRepository(path: dir.appendingPathComponent("curbside.sqlite").path)
    }

    func services() async throws -> [Service] { try await offMain { try self.store.services() } }

    func definition(_ code: String) async throws -> ServiceDefinition {
        try await offMain { try self.store.serviceDefinition(serviceCode: code) }
    }

    func createDraft(_ code: String, _ edit: DraftEdit) async throws -> Draft {
        try await offMain { try self.store.createDraft(serviceCode: code, edit: edit) }
    }

    func editDraft(_ id: String, _ edit: DraftEdit) async throws -> Draft {
        try await offMain { try self.store.editDraft(id: id, edit: edit) }
    }

    func problems(_ id: String) async throws -> [Problem] {
        try await offMain { try self.store.validateDraft(id: id) }
    }

    func submit(_ id: String) async throws -> Draft {
        try await offMain { try self.store.submitDraft(id: id) }
    }

    func attachPhoto(_ id: String, jpeg: Data) async throws -> AttachedPhoto {
        try await store.attachPhoto(id: id, photo: jpeg)
    }

    func nearby(_ code: String, at: Location, exclude: String?) async throws -> [NearbyRequest] {
        try await offMain { try self.store.nearby(serviceCode: code, at: at, exclude: exclude) }
    }

    func myReports() async throws -> [ReportRow] {
        try await offMain {
            var unread: [String: Int] = [:]
            for update in try self.store.unreadUpdates(limit: 500) {
                unread[update.requestId, default: 0] += 1
            }
            return try self.store.drafts(state: nil, limit: 200).map { summary in
                ReportRow(draft: try self.store.draft(id: summary.id), unread: unread[summary.id] ?? 0)
            }
        }
    }

    func open(_ id: String) async throws -> RequestDetail {
        try await offMain {
            let detail = try self.store.requestDetail(id: id)
            _ = try self.store.markSeen(id: id)
            return detail
        }
    }

    func wardRequests() async throws -> [RequestDetail] {
        try await offMain {
            try self.store.replicatedRequests().map { try self.store.requestDetail(id: $0) }.filter { !$0.mine }
        }
    }

    func setStatus(_ id: String, _ status: RequestState, note: String?) async throws {
        try await offMain { try self.store.setStatus(id: id, status: status, note: note) }
    }

    /// Registers this install as a resident once, with the server named in Info.plist
    /// (`CurbsideServer`); later calls do nothing.
    func ensureRegistered() async throws {
        if try await offMain({ try self.store.registration() }) != nil { return }
        let server = Bundle.main.object(forInfoDictionaryKey: "CurbsideServer") as? String ?? "https://311.example.org"
        _ = try await store.register(server: server, inspectorWards: [], adminKey: nil)
    }

    func status() async throws -> SyncStatus { try await offMain { try self.store.syncStatus() } }

    /// One sync; cancelling the calling task cancels the sync between its steps.
    func sync(cancel: SyncCancel? = nil, progress: @escaping @Sendable (SyncProgress) -> Void = { _ in })
        async throws -> SyncSummary
    {
        try await store.sync(observer: ProgressForwarder(progress), cancel: cancel)
    }
}
