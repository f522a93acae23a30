// The report screen's logic: service picker, the form from the service's definition, a photo,
// the location (a map pin when the fix is weak), the duplicate hint, submitting. Platform-free:
// the Android ViewModel calls these from viewModelScope; the JVM scenario calls them directly.
package org.curbside.sample

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import org.curbside.ApiException
import org.curbside.AttachedPhoto
import org.curbside.AttributeAnswer
import org.curbside.Draft
import org.curbside.DraftEdit
import org.curbside.Location
import org.curbside.LocationSource
import org.curbside.NearbyRequest
import org.curbside.Problem
import org.curbside.Service
import org.curbside.ServiceDefinition

/** A fix worse than this (metres, ~68% radius), or one with no accuracy, asks for a map pin. */
const val WEAK_FIX_M = 50.0

data class ReportState(
    val services: List<Service> = emptyList(),
    val service: Service? = null,
    val definition: ServiceDefinition? = null,
    val draft: Draft? = null,
    /** What stops the report from being sent, each naming its field. */
    val problems: List<Problem> = emptyList(),
    /** Open requests of the same service nearby: "is it one of these?" before sending. */
    val duplicates: List<NearbyRequest> = emptyList(),
    /** The location is missing, weak, or outside the city: show the map pin. */
    val needsPin: Boolean = false,
    val submitted: Draft? = null,
)

class ReportViewModel(private val repo: CurbsideRepository) {
    private val _state = MutableStateFlow(ReportState())
    val state: StateFlow<ReportState> = _state.asStateFlow()

    private fun draftId(): String = checkNotNull(_state.value.draft) { "choose a service first" }.id

    suspend fun load() {
        _state.value = _state.value.copy(services = repo.services())
    }

    /** Starts a draft of `code`; the form's questions come from its definition. */
    suspend fun choose(code: String) {
        val service = _state.value.services.first { it.code == code }
        val definition = repo.definition(code)
        val draft = repo.createDraft(code, DraftEdit())
        _state.value = _state.value.copy(service = service, definition = definition, draft = draft)
        refresh(draft)
    }

    suspend fun describe(text: String) = refresh(repo.editDraft(draftId(), DraftEdit(description = text)))

    /** Answers one question; a wrong datatype or a value outside the list is a problem shown. */
    suspend fun answer(code: String, values: List<String>) {
        try {
            refresh(repo.editDraft(draftId(), DraftEdit(attributes = listOf(AttributeAnswer(code, values)))))
        } catch (e: ApiException.InvalidInput) {
            _state.value = _state.value.copy(problems = e.problems)
        }
    }

    /** A photo from the camera or gallery (JPEG); its GPS fix becomes the location if none. */
    suspend fun photo(jpeg: ByteArray): AttachedPhoto {
        val attached = repo.attachPhoto(draftId(), jpeg)
        refresh(repo.draft(draftId()))
        return attached
    }

    /** The platform's fix (GPS or network), with its accuracy. */
    suspend fun located(fix: Location) = refresh(repo.editDraft(draftId(), DraftEdit(location = fix)))

    /** Where the person put the pin on the map. */
    suspend fun pin(lat: Double, lon: Double) =
        refresh(repo.editDraft(draftId(), DraftEdit(location = Location(lat, lon, null, LocationSource.MAP_PIN))))

    /** Queues the report (it leaves with the next sync); false with the problems shown. */
    suspend fun submit(): Boolean = try {
        val queued = repo.submit(draftId())
        _state.value = _state.value.copy(submitted = queued, problems = emptyList(), needsPin = false)
        true
    } catch (e: ApiException.InvalidInput) {
        _state.value = _state.value.copy(
            problems = e.problems,
            needsPin = _state.value.needsPin || e.problems.any { it.field == "location" },
        )
        false
    }

    private suspend fun refresh(draft: Draft) {
        val location = draft.location
        val weak = location == null ||
            (location.source != LocationSource.MAP_PIN && (location.accuracyM ?: Double.MAX_VALUE) > WEAK_FIX_M)
        val duplicates = if (location != null) repo.nearby(draft.serviceCode, location, draft.id) else emptyList()
        _state.value = _state.value.copy(
            draft = draft,
            problems = repo.problems(draft.id),
            duplicates = duplicates,
            needsPin = weak,
        )
    }
}
