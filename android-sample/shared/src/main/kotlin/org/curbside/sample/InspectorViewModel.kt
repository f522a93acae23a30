// An inspector's list for their wards, with status changes made offline and sent by the next sync.
package org.curbside.sample

import kotlinx.coroutines.flow.Flow
import org.curbside.RequestDetail
import org.curbside.RequestState

class InspectorViewModel(private val repo: CurbsideRepository) {
    val requests: Flow<List<RequestDetail>> = repo.wardRequests()

    /** Works offline: the change waits in the outbox for the next sync. */
    suspend fun setStatus(id: String, status: RequestState, publicNote: String?) =
        repo.setStatus(id, status, publicNote)

    suspend fun note(id: String, text: String, public: Boolean) = repo.addNote(id, text, public)
}
