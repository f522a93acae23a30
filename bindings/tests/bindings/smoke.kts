// The Kotlin bindings on the plain JVM, as an Android app would call them (off the UI thread).
import org.curbside.*
import java.nio.file.Files
import kotlinx.coroutines.runBlocking

var passed = 0
var failed = 0
fun check(name: String, body: () -> Unit) {
    try { body(); passed++; println("ok   $name") }
    catch (e: Throwable) { failed++; println("FAIL $name: $e") }
}

val dir = Files.createTempDirectory("curbside-kt")
val store = CurbsideStore.open(dir.resolve("kt.db").toString())

check("catalogue") {
    val codes = store.services().map { it.code }
    assert("CSROWR-12" in codes && "30102" in codes) { codes.toString() }
    val def = store.serviceDefinition("ANS-WILDLIFE-INJURED")
    assert(def.attributes.any { it.datatype == Datatype.DATETIME && it.required })
}

check("draft to queue") {
    var draft = store.createDraft("CSROWR-12", DraftEdit(description = "Pothole on Queen St"))
    assert(draft.state == RequestState.DRAFT)
    val problems = store.validateDraft(draft.id).map { it.field }.toSet()
    assert(problems == setOf("attribute[SIZE]", "location")) { problems.toString() }
    try {
        store.submitDraft(draft.id)
        throw AssertionError("an incomplete draft was queued")
    } catch (e: ApiException.InvalidInput) {
        assert(e.problems.size == 2)
    }
    draft = store.editDraft(draft.id, DraftEdit(
        attributes = listOf(AttributeAnswer("SIZE", listOf("medium"))),
        address = "Queen St W / Spadina Ave",
        contact = Contact(email = "resident@example.org"),
        anonymous = false,
    ))
    val queued = store.submitDraft(draft.id)
    assert(queued.state == RequestState.QUEUED)
    assert(queued.history.map { it.to } == listOf(RequestState.DRAFT, RequestState.QUEUED))
    assert(store.drafts(RequestState.QUEUED, 10u).first().id == draft.id)
    try {
        store.editDraft(draft.id, DraftEdit(description = "too late"))
        throw AssertionError("a queued request was edited")
    } catch (e: ApiException.Conflict) { }
    assert(store.withdrawDraft(draft.id).state == RequestState.DRAFT)
    store.deleteDraft(draft.id)
    try { store.draft(draft.id); throw AssertionError("deleted draft found") }
    catch (e: ApiException.NotFound) { }
}

check("photos") {
    val photos = java.io.File("../shared/data/photos")
    val d = store.createDraft("CSROWR-12", DraftEdit())
    val attached = runBlocking { store.attachPhoto(d.id, photos.resolve("mobile/iphone_hdr_NO.jpg").readBytes()) }
    assert(attached.photo.width == 1600u && attached.photo.bytes <= 500_000uL) { attached.toString() }
    assert(attached.locationTaken)
    assert(store.draft(d.id).photos.single().sha256 == attached.photo.sha256)
    try {
        runBlocking { store.attachPhoto(d.id, photos.resolve("invalid/corrupted.jpg").readBytes()) }
    } catch (e: ApiException.InvalidInput) { }
    assert(store.photos(d.id).size == 1)
}

check("typed errors") {
    val d = store.createDraft("CSROWR-12", DraftEdit())
    try {
        store.editDraft(d.id, DraftEdit(attributes = listOf(AttributeAnswer("DEPTH_CM", listOf("deep")))))
        throw AssertionError("a word accepted as a number")
    } catch (e: ApiException.InvalidInput) {
        assert(e.problems.single().kind == ProblemKind.NOT_A_NUMBER)
        assert(e.problems.single().field == "attribute[DEPTH_CM]")
    }
    try {
        store.editDraft(d.id, DraftEdit(location = Location(0.0, 0.0, null, LocationSource.GPS)))
        throw AssertionError("(0, 0) accepted")
    } catch (e: ApiException.InvalidInput) { }
}

println("$passed passed, $failed failed")
if (failed > 0) kotlin.system.exitProcess(1)
