// "My reports": status, expected date, notes and unread badges, kept fresh by the change flow.
package org.curbside.sample

import kotlinx.coroutines.flow.Flow
import org.curbside.ApiException
import org.curbside.RequestDetail

class MyReportsViewModel(private val repo: CurbsideRepository) {
    /** Re-read after every commit that changed a request (the user's or a sync's). */
    val reports: Flow<List<ReportRow>> = repo.myReports()

    /**
     * Opens a report: its notes and history (a draft's as this device holds it), or null when
     * it is gone (deleted meanwhile); its news counts as seen.
     */
    suspend fun open(id: String): RequestDetail? {
        val detail = try {
            repo.detail(id)
        } catch (e: ApiException.NotFound) {
            null
        }
        repo.markSeen(id)
        return detail
    }
}
