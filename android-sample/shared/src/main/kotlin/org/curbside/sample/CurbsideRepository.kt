// The one place the sample talks to the bindings: every call off the main thread, sync status
// and changes as flows. Platform-free: the Android app and the JVM scenario use it alike.
package org.curbside.sample

import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.onStart
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlinx.coroutines.withContext
import org.curbside.AttachedPhoto
import org.curbside.CurbsideStore
import org.curbside.Draft
import org.curbside.DraftEdit
import org.curbside.DraftSummary
import org.curbside.Location
import org.curbside.NearbyRequest
import org.curbside.RequestDetail
import org.curbside.RequestState
import org.curbside.RequestUpdate
import org.curbside.Service
import org.curbside.ServiceDefinition
import org.curbside.SyncCancel
import org.curbside.SyncObserver
import org.curbside.SyncProgress
import org.curbside.SyncStatus
import org.curbside.SyncSummary

/** A row of "my reports": the request, its city's news not yet seen, and when it is expected. */
data class ReportRow(
    val summary: DraftSummary,
    val draft: Draft,
    val unread: Int,
)

class CurbsideRepository(
    val store: CurbsideStore,
    private val io: CoroutineDispatcher = Dispatchers.IO,
) {
    private val _status = MutableStateFlow(store.syncStatus())
    /** Idle, syncing with progress, offline or failed; what waits to leave the phone. */
    val status: StateFlow<SyncStatus> = _status.asStateFlow()
    private val syncing = Mutex()

    /** Every commit's changed requests (see [changes]). */
    val changes: Flow<List<org.curbside.RequestChange>> = store.changes()

    /** Registers this install as a resident with `server` once; later calls do nothing. */
    suspend fun ensureRegistered(server: String) {
        if (withContext(io) { store.registration() } == null) store.register(server, emptyList(), null)
    }

    suspend fun services(): List<Service> = withContext(io) { store.services() }
    suspend fun definition(code: String): ServiceDefinition = withContext(io) { store.serviceDefinition(code) }
    suspend fun createDraft(code: String, edit: DraftEdit): Draft = withContext(io) { store.createDraft(code, edit) }
    suspend fun editDraft(id: String, edit: DraftEdit): Draft = withContext(io) { store.editDraft(id, edit) }
    suspend fun draft(id: String): Draft = withContext(io) { store.draft(id) }
    suspend fun problems(id: String) = withContext(io) { store.validateDraft(id) }
    /** Throws `ApiException.InvalidInput` with every problem when the draft is not ready. */
    suspend fun submit(id: String): Draft = withContext(io) { store.submitDraft(id) }
    suspend fun attachPhoto(id: String, jpeg: ByteArray): AttachedPhoto = store.attachPhoto(id, jpeg)
    suspend fun nearby(code: String, at: Location, exclude: String?): List<NearbyRequest> =
        withContext(io) { store.nearby(code, at, exclude) }
    suspend fun detail(id: String): RequestDetail = withContext(io) { store.requestDetail(id) }
    suspend fun markSeen(id: String): UInt = withContext(io) { store.markSeen(id) }
    suspend fun unread(): List<RequestUpdate> = withContext(io) { store.unreadUpdates(200u) }

    /** The user's reports, newest first, again after every change. */
    fun myReports(): Flow<List<ReportRow>> = changes.map { }.onStart { emit(Unit) }.map {
        withContext(io) {
            val unread = store.unreadUpdates(500u).groupingBy { it.requestId }.eachCount()
            store.drafts(null, 200u).map { ReportRow(it, store.draft(it.id), unread[it.id] ?: 0) }
        }
    }

    /** The requests of an inspector's wards (not their own), again after every change. */
    fun wardRequests(): Flow<List<RequestDetail>> = changes.map { }.onStart { emit(Unit) }.map {
        withContext(io) {
            store.replicatedRequests().map { store.requestDetail(it) }.filter { !it.mine }
        }
    }

    suspend fun setStatus(id: String, status: RequestState, note: String?) =
        withContext(io) { store.setStatus(id, status, note) }
    suspend fun addNote(id: String, text: String, public: Boolean): String =
        withContext(io) { store.addNote(id, text, public) }

    /**
     * One sync at a time from this app (a second caller waits, then syncs what is new). The
     * status flow follows its progress; [cancel] stops it between steps.
     */
    suspend fun sync(cancel: SyncCancel? = null, onProgress: (SyncProgress) -> Unit = {}): SyncSummary =
        syncing.withLock {
            val observer = object : SyncObserver {
                override fun onProgress(progress: SyncProgress) {
                    _status.value = store.syncStatus()
                    onProgress(progress)
                }
            }
            try {
                store.sync(observer, cancel)
            } finally {
                _status.value = store.syncStatus()
            }
        }
}
