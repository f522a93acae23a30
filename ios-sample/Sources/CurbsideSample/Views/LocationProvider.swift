// One location fix with its accuracy; the report screen asks for a map pin when it is weak.
import Combine
import CoreLocation

final class LocationProvider: NSObject, ObservableObject, CLLocationManagerDelegate {
    private let manager = CLLocationManager()
    private var pending: ((Double, Double, Double) -> Void)?

    override init() {
        super.init()
        manager.delegate = self
        manager.desiredAccuracy = kCLLocationAccuracyBest
    }

    /// Asks for permission the first time; the fix is requested once it is granted.
    func request(_ done: @escaping (Double, Double, Double) -> Void) {
        pending = done
        switch manager.authorizationStatus {
        case .authorizedWhenInUse, .authorizedAlways: manager.requestLocation()
        case .notDetermined: manager.requestWhenInUseAuthorization()
        default: pending = nil  // refused: the map pin remains
        }
    }

    func locationManagerDidChangeAuthorization(_ manager: CLLocationManager) {
        switch manager.authorizationStatus {
        case .authorizedWhenInUse, .authorizedAlways:
            if pending != nil { manager.requestLocation() }
        default:
            pending = nil
        }
    }

    func locationManager(_ manager: CLLocationManager, didUpdateLocations locations: [CLLocation]) {
        guard let fix = locations.last else { return }
        pending?(fix.coordinate.latitude, fix.coordinate.longitude, fix.horizontalAccuracy)
        pending = nil
    }

    func locationManager(_ manager: CLLocationManager, didFailWithError error: Error) {
        pending = nil
    }
}
