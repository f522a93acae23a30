// Background sync with BGTaskScheduler: a processing task that needs the network, scheduled
// again after each run; the system's expiry cancels the sync between its steps.
import BackgroundTasks
import Foundation
import Curbside

enum BackgroundSync {
    static let identifier = "org.curbside.sample.sync"

    /// Call once, before the app finishes launching (Info.plist lists the identifier under
    /// BGTaskSchedulerPermittedIdentifiers).
    static func register(repo: CurbsideRepository) {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            guard let task = task as? BGProcessingTask else { return }
            run(task, repo: repo)
        }
    }

    static func schedule(after seconds: TimeInterval = 15 * 60) {
        let request = BGProcessingTaskRequest(identifier: identifier)
        request.requiresNetworkConnectivity = true
        request.earliestBeginDate = Date(timeIntervalSinceNow: seconds)
        try? BGTaskScheduler.shared.submit(request)
    }

    private static func run(_ task: BGProcessingTask, repo: CurbsideRepository) {
        schedule()
        let cancel = SyncCancel()
        task.expirationHandler = { cancel.cancel() }
        Task.detached {
            do {
                try await repo.ensureRegistered()
                _ = try await repo.sync(cancel: cancel)
                task.setTaskCompleted(success: true)
            } catch {
                // Offline or cancelled: nothing is lost, the next run goes on from here.
                task.setTaskCompleted(success: false)
            }
        }
    }
}
