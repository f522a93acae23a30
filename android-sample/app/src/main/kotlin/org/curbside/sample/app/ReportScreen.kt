package org.curbside.sample.app

import android.annotation.SuppressLint
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.net.Uri
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.Checkbox
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.RadioButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.collectAsState
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.unit.dp
import com.google.android.gms.maps.model.CameraPosition
import com.google.android.gms.maps.model.LatLng
import com.google.maps.android.compose.GoogleMap
import com.google.maps.android.compose.rememberCameraPositionState
import com.google.android.gms.location.LocationServices
import com.google.android.gms.location.Priority
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.curbside.Attribute
import org.curbside.Datatype
import org.curbside.Location
import org.curbside.LocationSource
import java.io.ByteArrayOutputStream

/**
 * The report screen: service picker, the form generated from the definition, a photo from the
 * camera or gallery (decoded by the platform and handed over as JPEG), the location with its
 * accuracy and a map-pin fallback when the fix is weak, the duplicate hint before sending.
 */
@Composable
fun ReportScreen(model: ReportScreenModel, modifier: Modifier = Modifier, submitted: () -> Unit) {
    val state by model.logic.state.collectAsState()
    val context = LocalContext.current
    LaunchedEffect(Unit) { model.scope.launch { model.logic.load() } }
    val error by model.error.collectAsState()
    // Location is asked for when the person asks to use it, not at start (fine or coarse: from
    // Android 12 the person may grant only the approximate one).
    val askLocation = rememberLauncherForActivityResult(ActivityResultContracts.RequestMultiplePermissions()) { grants ->
        if (grants.values.any { it }) currentFix(context) { fix -> model.scope.launch { model.logic.located(fix) } }
    }
    val pickPhoto = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri: Uri? ->
        if (uri != null) model.scope.launch {
            val jpeg = withContext(Dispatchers.Default) { jpegOf(context, uri) }
            model.logic.photo(jpeg)
        }
    }
    Column(modifier.verticalScroll(rememberScrollState())) {
        error?.let { Text(it, Modifier.clickable { model.dismissError() }) }
        Text("What is the problem?")
        for (service in state.services) {
            Row(Modifier.clickable { model.scope.launch { model.logic.choose(service.code) } }) {
                RadioButton(selected = state.service?.code == service.code, onClick = null)
                Text(service.name)
            }
        }
        state.service?.let { Text(it.standard) }
        state.definition?.attributes?.forEach { attribute ->
            AttributeInput(attribute, state.draft?.attributes?.get(attribute.code) ?: emptyList()) { values ->
                model.scope.launch { model.logic.answer(attribute.code, values) }
            }
        }
        val drafting = state.draft != null
        Button(
            onClick = { pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) },
            enabled = drafting,
        ) {
            Text("Add a photo")
        }
        state.draft?.location?.let { at ->
            Text("Location: %.5f, %.5f%s".format(at.lat, at.lon, at.accuracyM?.let { " ± ${it.toInt()} m" } ?: ""))
        }
        Button(
            onClick = {
                askLocation.launch(arrayOf(
                    android.Manifest.permission.ACCESS_FINE_LOCATION,
                    android.Manifest.permission.ACCESS_COARSE_LOCATION,
                ))
            },
            enabled = drafting,
        ) {
            Text("Use my location")
        }
        if (drafting && state.needsPin) {
            // The map opens on the fix (or City Hall); the cross marks where the pin goes.
            val start = state.draft?.location?.let { LatLng(it.lat, it.lon) } ?: LatLng(43.6532, -79.3832)
            val camera = rememberCameraPositionState { position = CameraPosition.fromLatLngZoom(start, 17f) }
            Text("The location is weak: move the map so the problem is under the cross.")
            Box(Modifier.fillMaxWidth().height(240.dp)) {
                GoogleMap(modifier = Modifier.matchParentSize(), cameraPositionState = camera)
                Text("+", Modifier.align(Alignment.Center))
            }
            Button(onClick = {
                val at = camera.position.target
                model.scope.launch { model.logic.pin(at.latitude, at.longitude) }
            }) { Text("Put the pin here") }
        }
        if (state.duplicates.isNotEmpty()) {
            Text("Already reported nearby? ${state.duplicates.size} open report(s) within ${state.duplicates.maxOf { it.distanceM }.toInt()} m")
        }
        for (problem in state.problems) Text(problem.message)
        Button(onClick = {
            model.scope.launch { if (model.logic.submit()) submitted() }
        }, enabled = state.draft != null) { Text("Send") }
    }
}

@Composable
private fun AttributeInput(attribute: Attribute, answer: List<String>, changed: (List<String>) -> Unit) {
    Text(attribute.description)
    if (!attribute.variable) return
    when (attribute.datatype) {
        Datatype.SINGLE_VALUE_LIST -> attribute.values.forEach { v ->
            Row(Modifier.clickable { changed(listOf(v.key)) }) {
                RadioButton(selected = v.key in answer, onClick = null); Text(v.name)
            }
        }
        Datatype.MULTI_VALUE_LIST -> attribute.values.forEach { v ->
            Row(Modifier.clickable { changed(if (v.key in answer) answer - v.key else answer + v.key) }) {
                Checkbox(checked = v.key in answer, onCheckedChange = null); Text(v.name)
            }
        }
        else -> {
            // Typed text stays local (no round trip per keystroke); it is saved when it changes.
            var text by remember(attribute.code) { mutableStateOf(answer.firstOrNull() ?: "") }
            OutlinedTextField(value = text, onValueChange = { text = it; changed(listOf(it)) })
        }
    }
}

/**
 * The platform decodes HEIF and the rest (off the main thread, at most 3,200 px on its long
 * edge: the library makes 1,600); the bindings get JPEG.
 */
private fun jpegOf(context: android.content.Context, uri: Uri): ByteArray {
    val source = ImageDecoder.createSource(context.contentResolver, uri)
    val bitmap = ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
        val long = maxOf(info.size.width, info.size.height)
        if (long > 3_200) {
            decoder.setTargetSize(info.size.width * 3_200 / long, info.size.height * 3_200 / long)
        }
    }
    return ByteArrayOutputStream().use { out ->
        bitmap.compress(Bitmap.CompressFormat.JPEG, 92, out)
        out.toByteArray()
    }
}

@SuppressLint("MissingPermission") // called once the permission is granted
private fun currentFix(context: android.content.Context, done: (Location) -> Unit) {
    LocationServices.getFusedLocationProviderClient(context)
        .getCurrentLocation(Priority.PRIORITY_HIGH_ACCURACY, null)
        .addOnSuccessListener { fix ->
            if (fix != null) {
                done(Location(fix.latitude, fix.longitude, fix.accuracy.toDouble(), LocationSource.GPS))
            }
        }
}
