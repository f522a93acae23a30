// The resident's scenario of scenario.py and scenario.kts, in Swift over the generated
// bindings (async/await, the change listener as an AsyncStream). No Swift toolchain exists on
// the CI machine: scripts/check-swift.py parses this file with tree-sitter and checks that every
// binding symbol it calls exists in the generated Curbside.swift; it is not compiled or run.
import Foundation
import Curbside

final class Heard: ChangeListener, @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [RequestChange] = []

    func onChange(changes: [RequestChange]) throws {
        lock.lock()
        self.changes.append(contentsOf: changes)
        lock.unlock()
    }

    func take() -> [RequestChange] {
        lock.lock()
        defer { lock.unlock() }
        let taken = changes
        changes = []
        return taken
    }
}

final class CancelAfterPush: SyncObserver, @unchecked Sendable {
    let cancel: SyncCancel

    init(_ cancel: SyncCancel) {
        self.cancel = cancel
    }

    func onProgress(progress: SyncProgress) throws {
        if progress.pushedChanges > 0 {
            cancel.cancel()
        }
    }
}

func answer(_ attribute: Attribute) -> [String] {
    switch attribute.datatype {
    case .singleValueList, .multiValueList: return [attribute.values[0].key]
    case .number: return ["12"]
    case .datetime: return ["2026-12-01T09:30:00-05:00"]
    default: return ["yes"]
    }
}

func scenario(server: String, admin: String, photos: URL, dir: URL) async throws {
    let resident = try CurbsideStore.open(path: dir.appendingPathComponent("resident.db").path)
    let inspector = try CurbsideStore.open(path: dir.appendingPathComponent("inspector.db").path)
    _ = try await resident.register(server: server, inspectorWards: [], adminKey: nil)
    _ = try await inspector.register(server: server, inspectorWards: ["10"], adminKey: admin)
    let heard = Heard()
    _ = try resident.addListener(listener: heard)

    let definition = try resident.serviceDefinition(serviceCode: "CSROWR-12")
    let answers = definition.attributes.filter { $0.variable && $0.required }.map {
        AttributeAnswer(code: $0.code, values: answer($0))
    }
    var draft = try resident.createDraft(
        serviceCode: "CSROWR-12", edit: DraftEdit(description: "Deep pothole in the curb lane", attributes: answers))
    let jpeg = try Data(contentsOf: photos.appendingPathComponent("mobile/iphone_hdr_NO.jpg"))
    let attached = try await resident.attachPhoto(id: draft.id, photo: jpeg)
    precondition(attached.locationTaken)
    do {
        _ = try resident.submitDraft(id: draft.id)
        preconditionFailure("a report located in Madrid was queued")
    } catch let ApiError.InvalidInput(_, problems) {
        precondition(problems.map { $0.field } == ["location"])
    }
    let pin = Location(lat: 43.6453, lon: -79.3950, accuracyM: 6, source: .mapPin)
    _ = try resident.editDraft(id: draft.id, edit: DraftEdit(location: pin))
    draft = try resident.submitDraft(id: draft.id)
    precondition(draft.state == .queued)

    let summary = try await resident.sync(observer: nil, cancel: nil)
    precondition(summary.photosUploaded == 1)
    precondition(try resident.draft(id: draft.id).serviceRequestId != nil)

    _ = try await inspector.sync(observer: nil, cancel: nil)
    try inspector.setStatus(id: draft.id, status: .inProgress, note: "A crew is booked for Tuesday")
    _ = try await inspector.sync(observer: nil, cancel: nil)

    _ = heard.take()
    _ = try await resident.sync(observer: nil, cancel: nil)
    precondition(heard.take().contains { $0.requestId == draft.id && $0.fromSync && $0.kinds.contains(.status) })
    let news = try resident.unreadUpdates(limit: 20)
    precondition(news.contains { $0.status == .inProgress })
    precondition(try resident.markSeen(id: draft.id) == 2)

    let second = try resident.createDraft(
        serviceCode: "CSROWR-12", edit: DraftEdit(description: "Another", attributes: answers, location: pin))
    _ = try await resident.attachPhoto(
        id: second.id, photo: try Data(contentsOf: photos.appendingPathComponent("mobile/jolla.jpg")))
    _ = try resident.submitDraft(id: second.id)
    let cancel = SyncCancel()
    do {
        _ = try await resident.sync(observer: CancelAfterPush(cancel), cancel: cancel)
        preconditionFailure("the cancelled sync finished")
    } catch ApiError.Cancelled {
    }
    cancel.cancel()
    precondition(try resident.syncStatus().pendingPhotos == 1)
    _ = try await resident.sync(observer: nil, cancel: nil)
    precondition(try resident.syncStatus().pendingPhotos == 0)

    resident.shutdown()
    do {
        _ = try resident.drafts(state: nil, limit: 10)
        preconditionFailure("answered after shutdown")
    } catch ApiError.Closed {
    }
}

let env = ProcessInfo.processInfo.environment
let semaphore = DispatchSemaphore(value: 0)
Task {
    try await scenario(
        server: env["CURBSIDE_SERVER"]!, admin: env["CURBSIDE_ADMIN_KEY"]!,
        photos: URL(fileURLWithPath: "../shared/data/photos"),
        dir: FileManager.default.temporaryDirectory)
    print("ok   swift scenario")
    semaphore.signal()
}
semaphore.wait()
