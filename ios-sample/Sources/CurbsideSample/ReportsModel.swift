// "My reports" and the inspector's list, refreshed by the store's change stream.
import Combine
import Foundation
import Curbside

@MainActor
final class MyReportsModel: ObservableObject {
    @Published var rows: [ReportRow] = []
    private let repo: CurbsideRepository

    init(repo: CurbsideRepository) {
        self.repo = repo
    }

    /// Loads, then reloads after every change until the task is cancelled.
    func follow() async {
        rows = (try? await repo.myReports()) ?? []
        for await _ in repo.store.changes() {
            rows = (try? await repo.myReports()) ?? rows
        }
    }

    func open(_ id: String) async throws -> RequestDetail {
        try await repo.open(id)
    }
}

@MainActor
final class InspectorModel: ObservableObject {
    @Published var requests: [RequestDetail] = []
    private let repo: CurbsideRepository

    init(repo: CurbsideRepository) {
        self.repo = repo
    }

    func follow() async {
        requests = (try? await repo.wardRequests()) ?? []
        for await _ in repo.store.changes() {
            requests = (try? await repo.wardRequests()) ?? requests
        }
    }

    /// Works offline; the next sync sends it.
    func setStatus(_ id: String, _ status: RequestState, note: String?) async throws {
        try await repo.setStatus(id, status, note: note)
    }
}
