// The report screen's state: service, the form from its definition, photo, location (a map pin
// when the fix is weak), the duplicate hint, submitting.
import Combine
import Foundation
import Curbside

/// A fix worse than this (metres), or one with no accuracy, asks for a map pin.
let weakFixMetres = 50.0

@MainActor
final class ReportModel: ObservableObject {
    @Published var services: [Service] = []
    @Published var definition: ServiceDefinition?
    @Published var draft: Draft?
    @Published var problems: [Problem] = []
    @Published var duplicates: [NearbyRequest] = []
    @Published var needsPin = false
    @Published var submitted: Draft?

    private let repo: CurbsideRepository

    init(repo: CurbsideRepository) {
        self.repo = repo
    }

    func load() async throws {
        services = try await repo.services()
    }

    func choose(_ code: String) async throws {
        definition = try await repo.definition(code)
        try await refresh(try await repo.createDraft(code, DraftEdit()))
    }

    func answer(_ code: String, _ values: [String]) async throws {
        guard let id = draft?.id else { return }
        do {
            let edit = DraftEdit(attributes: [AttributeAnswer(code: code, values: values)])
            try await refresh(try await repo.editDraft(id, edit))
        } catch let ApiError.InvalidInput(_, problems) {
            self.problems = problems
        }
    }

    func describe(_ text: String) async throws {
        guard let id = draft?.id else { return }
        try await refresh(try await repo.editDraft(id, DraftEdit(description: text)))
    }

    /// JPEG from the picker; its GPS fix becomes the location when there is none.
    func photo(_ jpeg: Data) async throws {
        guard let id = draft?.id else { return }
        _ = try await repo.attachPhoto(id, jpeg: jpeg)
        try await refresh(try await repo.editDraft(id, DraftEdit()))
    }

    func located(lat: Double, lon: Double, accuracy: Double) async throws {
        guard let id = draft?.id else { return }
        let fix = Location(lat: lat, lon: lon, accuracyM: accuracy, source: .gps)
        try await refresh(try await repo.editDraft(id, DraftEdit(location: fix)))
    }

    func pin(lat: Double, lon: Double) async throws {
        guard let id = draft?.id else { return }
        let pin = Location(lat: lat, lon: lon, accuracyM: nil, source: .mapPin)
        try await refresh(try await repo.editDraft(id, DraftEdit(location: pin)))
    }

    func submit() async throws -> Bool {
        guard let id = draft?.id else { return false }
        do {
            submitted = try await repo.submit(id)
            problems = []
            return true
        } catch let ApiError.InvalidInput(_, problems) {
            self.problems = problems
            needsPin = needsPin || problems.contains { $0.field == "location" }
            return false
        }
    }

    private func refresh(_ draft: Draft) async throws {
        self.draft = draft
        problems = try await repo.problems(draft.id)
        if let at = draft.location {
            needsPin = at.source != .mapPin && (at.accuracyM ?? .infinity) > weakFixMetres
            duplicates = try await repo.nearby(draft.serviceCode, at: at, exclude: draft.id)
        } else {
            needsPin = true
            duplicates = []
        }
    }
}
