// "My reports" with status, expected date, notes and unread badges; the inspector's list with
// status changes made offline.
import SwiftUI
import Curbside

struct MyReportsView: View {
    @StateObject var model: MyReportsModel
    @State private var opened: RequestDetail?

    var body: some View {
        List(model.rows) { row in
            Button {
                Task { opened = try? await model.open(row.id) }
            } label: {
                VStack(alignment: .leading) {
                    HStack {
                        Text(row.draft.serviceName ?? row.draft.serviceCode).font(.headline)
                        Spacer()
                        if row.unread > 0 {
                            Text("\(row.unread)").padding(6).background(Circle().fill(.red)).foregroundStyle(.white)
                        }
                    }
                    Text(stateName(row.draft.state)).font(.subheadline)
                    if let expected = row.draft.expectedAt {
                        Text("Expected by \(expected.formatted(date: .abbreviated, time: .omitted))").font(.footnote)
                    }
                    if let note = row.draft.statusNotes {
                        Text(note).font(.footnote).foregroundStyle(.secondary)
                    }
                }
            }
        }
        .task { await model.follow() }
        .sheet(item: Binding(get: { opened.map { Opened(detail: $0) } }, set: { opened = $0?.detail })) { item in
            List(item.detail.notes, id: \.id) { note in
                Text(note.text)
            }
        }
    }
}

struct Opened: Identifiable {
    var id: String { detail.id }
    let detail: RequestDetail
}

struct InspectorView: View {
    @StateObject var model: InspectorModel

    var body: some View {
        List(model.requests, id: \.id) { request in
            HStack {
                VStack(alignment: .leading) {
                    Text(request.serviceRequestId ?? request.id).font(.headline)
                    Text(request.description ?? "").font(.footnote).lineLimit(2)
                }
                Spacer()
                Menu(stateName(request.state)) {
                    ForEach([RequestState.inProgress, .scheduled, .completed, .cancelled], id: \.self) { status in
                        Button(stateName(status)) {
                            Task { try? await model.setStatus(request.id, status, note: nil) }
                        }
                    }
                }
            }
        }
        .task { await model.follow() }
    }
}

func stateName(_ state: RequestState) -> String {
    switch state {
    case .draft: return "Draft"
    case .queued: return "Waiting for a connection"
    case .sent: return "Sending"
    case .accepted: return "Received by the City"
    case .inProgress: return "In progress"
    case .scheduled: return "Scheduled"
    case .completed: return "Completed"
    case .cancelled: return "Closed"
    }
}
