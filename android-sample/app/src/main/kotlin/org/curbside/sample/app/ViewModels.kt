package org.curbside.sample.app

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.stateIn
import org.curbside.sample.CurbsideRepository
import org.curbside.sample.InspectorViewModel
import org.curbside.sample.MyReportsViewModel
import org.curbside.sample.ReportViewModel

/** The platform-free logic, kept across configuration changes and run in viewModelScope. */
class ReportScreenModel(repo: CurbsideRepository) : ViewModel() {
    val logic = ReportViewModel(repo)
    val scope = viewModelScope
}

class MyReportsScreenModel(repo: CurbsideRepository) : ViewModel() {
    val logic = MyReportsViewModel(repo)
    val reports = logic.reports.stateIn(viewModelScope, SharingStarted.WhileSubscribed(5_000), emptyList())
    val scope = viewModelScope
}

class InspectorScreenModel(repo: CurbsideRepository) : ViewModel() {
    val logic = InspectorViewModel(repo)
    val requests = logic.requests.stateIn(viewModelScope, SharingStarted.WhileSubscribed(5_000), emptyList())
    val scope = viewModelScope
}
