// A resident's report from first tap to the city's answer, through the Android sample's
// platform-free layer (repository and view models over the Kotlin bindings, with Flow) on the
// plain JVM, against a live curbside-server (CURBSIDE_SERVER, CURBSIDE_ADMIN_KEY); a neighbour
// and an inspector on their own stores. Run by scripts/test-bindings.sh.
import java.io.File
import java.nio.file.Files
import kotlinx.coroutines.*
import kotlinx.coroutines.flow.*
import org.curbside.*
import org.curbside.sample.*

val server = System.getenv("CURBSIDE_SERVER")!!
val admin = System.getenv("CURBSIDE_ADMIN_KEY")!!
val photos = File("../shared/data/photos")
val dir = Files.createTempDirectory("curbside-scenario")
val kingAndSpadina = Location(43.6453, -79.3950, 6.0, LocationSource.MAP_PIN)

fun answer(a: Attribute): List<String> = when (a.datatype) {
    Datatype.SINGLE_VALUE_LIST, Datatype.MULTI_VALUE_LIST -> listOf(a.values.first().key)
    Datatype.NUMBER -> listOf("12")
    Datatype.DATETIME -> listOf("2026-12-01T09:30:00-05:00")
    else -> listOf("yes")
}

fun <T> expect(what: String, block: () -> T): Nothing? {
    try { block() } catch (e: Exception) { return null }
    throw AssertionError("accepted: $what")
}

class Lines : LogSink {
    val lines = java.util.concurrent.CopyOnWriteArrayList<String>()
    override fun log(level: LogLevel, target: String, message: String) { lines.add("$target $message") }
}

runBlocking {
    val logs = Lines()
    setLogSink(logs, LogLevel.DEBUG)
    val resident = CurbsideRepository(CurbsideStore.open(dir.resolve("resident.db").toString()))
    val neighbour = CurbsideStore.open(dir.resolve("neighbour.db").toString())
    val inspectorStore = CurbsideStore.open(dir.resolve("inspector.db").toString())
    resident.ensureRegistered(server)
    resident.ensureRegistered(server) // once only: the second call keeps the registration
    val registered = resident.store.registration()!!
    neighbour.register(server, emptyList(), null)
    assert(inspectorStore.register(server, listOf("10"), admin).role == Role.INSPECTOR)

    // A listener that throws does not break the app, the store or the other listeners.
    resident.store.addListener(object : ChangeListener {
        override fun onChange(changes: List<RequestChange>) = throw IllegalStateException("badly written")
    })
    val heard = java.util.concurrent.CopyOnWriteArrayList<RequestChange>()
    val collecting = launch(Dispatchers.Default) { resident.changes.collect { heard.addAll(it) } }
    yield(); delay(100)

    // The report screen: pick a service, fill the form from its definition.
    val report = ReportViewModel(resident)
    report.load()
    report.choose("CSROWR-12")
    val required = report.state.value.definition!!.attributes.filter { it.variable && it.required }
    assert(report.state.value.problems.map { it.field }.containsAll(required.map { "attribute[${it.code}]" }))
    report.answer(required.first().code, listOf("not-a-key"))
    assert(report.state.value.problems.single().kind == ProblemKind.NOT_IN_LIST) { report.state.value.problems }
    for (a in required) report.answer(a.code, answer(a))
    report.describe("Deep pothole in the curb lane")

    // A real phone photo; its EXIF fix (Madrid, no accuracy) is taken, and is weak: pin it.
    val attached = report.photo(photos.resolve("mobile/iphone_hdr_NO.jpg").readBytes())
    assert(attached.locationTaken && attached.photo.bytes <= 500_000uL)
    assert(report.state.value.draft!!.location!!.source == LocationSource.PHOTO)
    assert(report.state.value.needsPin)
    assert(!report.submit()) { "a report located in Madrid was queued" }
    assert(report.state.value.problems.map { it.field } == listOf("location")) { report.state.value.problems }
    report.pin(kingAndSpadina.lat, kingAndSpadina.lon)
    assert(!report.state.value.needsPin)
    assert(report.submit())
    val id = report.state.value.submitted!!.id
    assert(resident.status.value.pendingRequests == 0uL) // the flow updates on sync
    assert(resident.store.syncStatus().pendingPhotos == 1uL)

    // Sync with progress: the photo's bytes go, the city's number comes back.
    val progress = mutableListOf<SyncProgress>()
    val summary = resident.sync { progress.add(it) }
    assert(summary.photosUploaded == 1uL) { summary }
    assert(progress.last().photoBytesSent == attached.photo.bytes) { progress }
    val accepted = resident.draft(id)
    assert(accepted.serviceRequestId != null && accepted.state == RequestState.ACCEPTED) { accepted }
    assert(accepted.expectedAt != null)
    assert(resident.status.value.phase is SyncPhase.Idle && resident.status.value.lastSuccess != null)

    // A neighbour reports the same pothole; after a sync, a new draft there sees it.
    val answers = required.map { AttributeAnswer(it.code, answer(it)) }
    val other = neighbour.createDraft("CSROWR-12", DraftEdit(description = "Pothole", attributes = answers,
        location = Location(43.64545, -79.39495, 5.0, LocationSource.GPS)))
    neighbour.submitDraft(other.id)
    neighbour.sync(null, null)
    resident.sync()
    val second = ReportViewModel(resident)
    second.load(); second.choose("CSROWR-12")
    second.located(Location(43.6453, -79.3950, 8.0, LocationSource.GPS))
    assert(other.id in second.state.value.duplicates.map { it.id }) { second.state.value.duplicates }

    // The inspector's list for ward 10; a status with a public note, offline, then synced.
    val inspectorRepo = CurbsideRepository(inspectorStore)
    val inspector = InspectorViewModel(inspectorRepo)
    inspectorRepo.sync()
    val ward = inspector.requests.first()
    assert(ward.any { it.id == id && it.serviceRequestId == accepted.serviceRequestId }) { ward.map { it.id } }
    inspector.setStatus(id, RequestState.IN_PROGRESS, "A crew is booked for Tuesday")
    inspector.note(id, "Needs the asphalt truck", false)
    assert(inspectorStore.syncStatus().pendingChanges > 0uL)
    inspectorRepo.sync()

    // The resident's next sync: the flow hears it, the badge shows it, opening clears it.
    heard.clear()
    resident.sync()
    withTimeout(5_000) { while (heard.none { it.requestId == id && it.fromSync && ChangeKind.STATUS in it.kinds }) delay(20) }
    val mine = MyReportsViewModel(resident)
    val row = mine.reports.first().single { it.summary.id == id }
    assert(row.unread == 2 && row.draft.state == RequestState.IN_PROGRESS) { row }
    assert(row.draft.statusNotes == "A crew is booked for Tuesday")
    assert(resident.store.registration() == registered)
    val detail = mine.open(id)!!
    assert(detail.notes.map { it.text } == listOf("A crew is booked for Tuesday")) { detail.notes }
    assert(mine.reports.first().single { it.summary.id == id }.unread == 0)
    // A draft opens too, as this device holds it: its own, with no number yet.
    val draftDetail = mine.open(second.state.value.draft!!.id)!!
    assert(draftDetail.mine && draftDetail.serviceRequestId == null) { draftDetail }
    assert(mine.open("0190f3a0-0000-7000-8000-00000000ffff") == null) // gone: nothing to show

    // Cancel mid-way (after the first push), then resume.
    val third = ReportViewModel(resident)
    third.load(); third.choose("CSROWR-12")
    for (a in required) third.answer(a.code, answer(a))
    third.pin(kingAndSpadina.lat, kingAndSpadina.lon)
    third.photo(photos.resolve("mobile/jolla.jpg").readBytes())
    assert(third.submit())
    val cancel = SyncCancel()
    try {
        resident.sync(cancel) { if (it.pushedChanges > 0uL) cancel.cancel() }
        throw AssertionError("the cancelled sync finished")
    } catch (e: ApiException.Cancelled) { }
    cancel.cancel()
    assert(resident.store.syncStatus().pendingPhotos == 1uL)
    resident.sync()
    assert(resident.draft(third.state.value.submitted!!.id).serviceRequestId != null)
    assert(resident.store.syncStatus().pendingPhotos == 0uL)

    // Typed errors with their problems, never a crash.
    try { resident.addNote(id, "  ", true); throw AssertionError("empty note") }
    catch (e: ApiException.InvalidInput) { assert(e.problems.single().field == "note") }
    try { resident.setStatus(id, RequestState.COMPLETED, null); throw AssertionError("a resident closed it") }
    catch (e: ApiException.Conflict) { }
    expect("text as a photo") { runBlocking { resident.attachPhoto(id, "not an image".toByteArray()) } }
    expect("one file opened twice") { CurbsideStore.open(dir.resolve("resident.db").toString()) }
    // A lone surrogate from the JVM is refused as malformed UTF-8 by the generated code,
    // before the call: a typed exception, and nothing stored changes.
    val before = resident.store.drafts(null, 100u).size
    try {
        resident.createDraft("CSROWR-12", DraftEdit(description = "broken \uD800 text"))
        throw AssertionError("a lone surrogate crossed")
    } catch (e: java.nio.charset.CharacterCodingException) { }
    try {
        resident.editDraft(id, DraftEdit(description = "\uDC00"))
        throw AssertionError("a lone surrogate crossed")
    } catch (e: java.nio.charset.CharacterCodingException) { }
    assert(resident.store.drafts(null, 100u).size == before)
    assert(resident.draft(id).description == "Deep pothole in the curb lane")
    try { CurbsideStore.open(dir.resolve("offline.db").toString()).register("http://127.0.0.1:9", emptyList(), null); throw AssertionError("registered") }
    catch (e: ApiException.Network) { }

    // Logs came, and none carries what the resident typed.
    assert(logs.lines.any { it.startsWith("curbside::sync") && "sync done" in it }) { logs.lines }
    assert(logs.lines.none { l -> listOf("Deep pothole", "crew is booked", "asphalt").any { it in l } })

    collecting.cancel()
    resident.store.shutdown()
    resident.store.shutdown()
    try { resident.store.drafts(null, 10u); throw AssertionError("answered after shutdown") }
    catch (e: ApiException.Closed) { }
    CurbsideStore.open(dir.resolve("resident.db").toString()).use { assert(it.syncStatus().pendingChanges == 0uL) }
}
println("ok   kotlin scenario: report screen, photo, pin, sync with progress, duplicate hint, inspector, Flow, unread, cancel and resume")
