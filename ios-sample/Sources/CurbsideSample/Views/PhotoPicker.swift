// The system photo picker, asked for a compatible representation: HEIF photos come back as
// JPEG, which is what the bindings take.
import PhotosUI
import SwiftUI
import UniformTypeIdentifiers

struct PhotoPicker: UIViewControllerRepresentable {
    let picked: (Data) -> Void

    func makeUIViewController(context: Context) -> PHPickerViewController {
        var configuration = PHPickerConfiguration()
        configuration.filter = .images
        configuration.selectionLimit = 1
        configuration.preferredAssetRepresentationMode = .compatible
        let picker = PHPickerViewController(configuration: configuration)
        picker.delegate = context.coordinator
        return picker
    }

    func updateUIViewController(_ controller: PHPickerViewController, context: Context) {}

    func makeCoordinator() -> Coordinator { Coordinator(picked: picked) }

    final class Coordinator: NSObject, PHPickerViewControllerDelegate {
        let picked: (Data) -> Void

        init(picked: @escaping (Data) -> Void) {
            self.picked = picked
        }

        func picker(_ picker: PHPickerViewController, didFinishPicking results: [PHPickerResult]) {
            picker.dismiss(animated: true)
            guard let provider = results.first?.itemProvider else { return }
            // JPEG when the picker has it (HEIF is transcoded), else the image as it is (PNG,
            // GIF, WebP…): the library reads those too.
            let type = provider.hasItemConformingToTypeIdentifier(UTType.jpeg.identifier) ? UTType.jpeg : UTType.image
            provider.loadDataRepresentation(forTypeIdentifier: type.identifier) { data, _ in
                guard let data else { return }
                DispatchQueue.main.async { self.picked(data) }
            }
        }
    }
}
