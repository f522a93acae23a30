package org.curbside.sample.app

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import kotlinx.coroutines.CoroutineExceptionHandler
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.stateIn
import kotlinx.coroutines.plus
import org.curbside.sample.CurbsideRepository
import org.curbside.sample.InspectorViewModel
import org.curbside.sample.MyReportsViewModel
import org.curbside.sample.ReportViewModel

/**
 * The platform-free logic, kept across configuration changes and run in viewModelScope. What an
 * action throws (a typed ApiException: a problem, a refusal, no network) becomes a message the
 * screen shows, never a crash.
 */
abstract class ScreenModel : ViewModel() {
    private val _error = MutableStateFlow<String?>(null)
    val error: StateFlow<String?> = _error.asStateFlow()
    val scope: CoroutineScope = viewModelScope + CoroutineExceptionHandler { _, e -> _error.value = e.message ?: e.toString() }
    fun dismissError() { _error.value = null }
}

class ReportScreenModel(repo: CurbsideRepository) : ScreenModel() {
    val logic = ReportViewModel(repo)
}

class MyReportsScreenModel(repo: CurbsideRepository) : ScreenModel() {
    val logic = MyReportsViewModel(repo)
    val reports = logic.reports.stateIn(scope, SharingStarted.WhileSubscribed(5_000), emptyList())
}

class InspectorScreenModel(repo: CurbsideRepository) : ScreenModel() {
    val logic = InspectorViewModel(repo)
    val requests = logic.requests.stateIn(scope, SharingStarted.WhileSubscribed(5_000), emptyList())
}
