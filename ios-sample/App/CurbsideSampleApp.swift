// The app's entry point. The Xcode app target compiles this folder with Sources/CurbsideSample
// and links the Curbside package product.
import SwiftUI

@main
struct CurbsideSampleApp: App {
    private let repo: CurbsideRepository?
    private let failure: String?

    init() {
        // The store lives in Application Support: backed up, never shown in Files. A store that
        // cannot open (a full disk, a newer app's file) is shown, not a crash.
        do {
            let repo = try CurbsideRepository.inAppSupport()
            BackgroundSync.register(repo: repo)
            BackgroundSync.schedule()
            Task.detached { try? await repo.ensureRegistered() }
            self.repo = repo
            failure = nil
        } catch {
            repo = nil
            failure = "\(error)"
        }
    }

    var body: some Scene {
        WindowGroup {
            if let repo {
                tabs(repo)
            } else {
                Text("Curbside cannot open its data: \(failure ?? "")").padding()
            }
        }
    }

    @MainActor
    private func tabs(_ repo: CurbsideRepository) -> some View {
        TabView {
            ReportView(model: ReportModel(repo: repo)).tabItem { Label("Report", systemImage: "plus.circle") }
            MyReportsView(model: MyReportsModel(repo: repo)).tabItem { Label("My reports", systemImage: "list.bullet") }
            InspectorView(model: InspectorModel(repo: repo)).tabItem { Label("Wards", systemImage: "checklist") }
        }
    }
}
