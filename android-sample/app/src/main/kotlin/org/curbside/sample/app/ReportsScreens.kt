package org.curbside.sample.app

import androidx.compose.foundation.clickable
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.layout.Column
import androidx.compose.material3.Badge
import androidx.compose.material3.Button
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.collectAsState
import androidx.compose.runtime.getValue
import androidx.compose.ui.Modifier
import kotlinx.coroutines.launch
import org.curbside.RequestState

/** "My reports": status, expected date, the city's note and an unread badge; opening clears it. */
@Composable
fun MyReportsScreen(model: MyReportsScreenModel, modifier: Modifier = Modifier) {
    val rows by model.reports.collectAsState()
    val error by model.error.collectAsState()
    error?.let { Text(it, Modifier.clickable { model.dismissError() }) }
    LazyColumn(modifier) {
        items(rows, key = { it.summary.id }) { row ->
            Column(Modifier.clickable { model.scope.launch { model.logic.open(row.summary.id) } }) {
                Text(row.summary.serviceName ?: row.summary.serviceCode)
                Text(row.draft.state.name.lowercase().replace('_', ' '))
                row.draft.expectedAt?.let { Text("Expected by $it") }
                row.draft.statusNotes?.let { Text(it) }
                if (row.unread > 0) Badge { Text("${row.unread}") }
            }
        }
    }
}

/** An inspector's wards: status changes work offline and leave with the next sync. */
@Composable
fun InspectorScreen(model: InspectorScreenModel, modifier: Modifier = Modifier) {
    val requests by model.requests.collectAsState()
    val error by model.error.collectAsState()
    // A resident's device has no ward list; a refused status change is shown, not thrown.
    error?.let { Text(it, Modifier.clickable { model.dismissError() }) }
    LazyColumn(modifier) {
        items(requests, key = { it.id }) { r ->
            Column {
                Text(r.serviceRequestId ?: r.id)
                Text(r.description ?: "")
                Text(r.state.name.lowercase().replace('_', ' '))
                for (status in listOf(RequestState.IN_PROGRESS, RequestState.SCHEDULED, RequestState.COMPLETED)) {
                    Button(onClick = { model.scope.launch { model.logic.setStatus(r.id, status, null) } }) {
                        Text(status.name.lowercase().replace('_', ' '))
                    }
                }
            }
        }
    }
}
