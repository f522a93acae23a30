// The report screen: service picker, the form generated from the service's definition, a photo
// from the picker (handed over as JPEG), the location with its accuracy and a map pin when the
// fix is weak, the duplicate hint before sending.
import MapKit
import SwiftUI
import Curbside

struct ReportView: View {
    @StateObject var model: ReportModel
    @StateObject private var location = LocationProvider()
    @State private var showPicker = false
    @State private var pinRegion = MKCoordinateRegion(
        center: CLLocationCoordinate2D(latitude: 43.6532, longitude: -79.3832),
        span: MKCoordinateSpan(latitudeDelta: 0.01, longitudeDelta: 0.01))
    @State private var error: String?

    var body: some View {
        Form {
            Section("What is the problem?") {
                Picker("Service", selection: Binding(
                    get: { model.draft?.serviceCode ?? "" },
                    set: { code in Task { await run { try await model.choose(code) } } })
                ) {
                    ForEach(model.services, id: \.code) { service in
                        Text(service.name).tag(service.code)
                    }
                }
                if let service = model.services.first(where: { $0.code == model.draft?.serviceCode }) {
                    Text(service.standard).font(.footnote).foregroundStyle(.secondary)
                }
            }
            if let definition = model.definition {
                Section("Details") {
                    ForEach(definition.attributes, id: \.code) { attribute in
                        AttributeField(attribute: attribute, answer: model.draft?.attributes[attribute.code] ?? []) { values in
                            Task { await run { try await model.answer(attribute.code, values) } }
                        }
                    }
                }
            }
            Section("Photo") {
                Button("Take or choose a photo") { showPicker = true }
                if let photos = model.draft?.photos, !photos.isEmpty {
                    Text("\(photos.count) photo(s), metadata removed").font(.footnote)
                }
            }
            Section("Where") {
                if let at = model.draft?.location {
                    Text(String(format: "%.5f, %.5f", at.lat, at.lon))
                    if let accuracy = at.accuracyM {
                        Text("± \(Int(accuracy)) m").font(.footnote)
                    }
                }
                Button("Use my location") {
                    location.request { lat, lon, accuracy in
                        Task { await run { try await model.located(lat: lat, lon: lon, accuracy: accuracy) } }
                    }
                }
                if model.needsPin {
                    Text("The location is weak: move the map to the problem.").font(.footnote)
                    Map(coordinateRegion: $pinRegion).frame(height: 220)
                    Button("Put the pin here") {
                        Task { await run { try await model.pin(lat: pinRegion.center.latitude, lon: pinRegion.center.longitude) } }
                    }
                }
            }
            if !model.duplicates.isEmpty {
                Section("Already reported nearby?") {
                    ForEach(model.duplicates, id: \.id) { hit in
                        Text("A report \(Int(hit.distanceM)) m away").font(.footnote)
                    }
                }
            }
            if !model.problems.isEmpty {
                Section("Before sending") {
                    ForEach(model.problems, id: \.self) { problem in
                        Text(problem.message).foregroundStyle(.red)
                    }
                }
            }
            Button("Send") {
                Task { await run { _ = try await model.submit() } }
            }
            .disabled(model.draft == nil)
        }
        .sheet(isPresented: $showPicker) {
            PhotoPicker { jpeg in
                Task { await run { try await model.photo(jpeg) } }
            }
        }
        .task { await run { try await model.load() } }
        .alert("Something went wrong", isPresented: Binding(get: { error != nil }, set: { _ in error = nil })) {
            Button("OK") {}
        } message: {
            Text(error ?? "")
        }
    }

    private func run(_ work: () async throws -> Void) async {
        do {
            try await work()
        } catch {
            self.error = "\(error)"
        }
    }
}

/// One question of the service's form, by its datatype.
struct AttributeField: View {
    let attribute: Attribute
    let answer: [String]
    let changed: ([String]) -> Void

    var body: some View {
        switch attribute.datatype {
        case .singleValueList:
            Picker(attribute.description, selection: Binding(
                get: { answer.first ?? "" },
                set: { changed([$0]) })
            ) {
                ForEach(attribute.values, id: \.key) { value in
                    Text(value.name).tag(value.key)
                }
            }
        case .multiValueList:
            ForEach(attribute.values, id: \.key) { value in
                Toggle(value.name, isOn: Binding(
                    get: { answer.contains(value.key) },
                    set: { on in changed(on ? answer + [value.key] : answer.filter { $0 != value.key }) }))
            }
        case .datetime:
            DatePicker(attribute.description, selection: Binding(
                get: { ISO8601DateFormatter().date(from: answer.first ?? "") ?? Date() },
                set: { changed([ISO8601DateFormatter().string(from: $0)]) }))
        default:
            if attribute.variable {
                TextField(attribute.description, text: Binding(
                    get: { answer.first ?? "" },
                    set: { changed([$0]) }))
                .keyboardType(attribute.datatype == .number ? .decimalPad : .default)
            } else {
                Text(attribute.description).font(.footnote)
            }
        }
    }
}
