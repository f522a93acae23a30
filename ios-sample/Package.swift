// swift-tools-version:5.9
// The iOS sample over the generated Swift bindings. scripts/build-xcframework.sh builds
// ../target/ios/CurbsideFFI.xcframework (device and simulator slices, the C header and its module
// map) and copies the generated Curbside.swift into Sources/Curbside/.
import PackageDescription

let package = Package(
    name: "CurbsideSample",
    platforms: [.iOS(.v16)],
    products: [
        .library(name: "Curbside", targets: ["Curbside"]),
        .library(name: "CurbsideSample", targets: ["CurbsideSample"]),
    ],
    targets: [
        .binaryTarget(name: "CurbsideFFI", path: "../target/ios/CurbsideFFI.xcframework"),
        .target(name: "Curbside", dependencies: ["CurbsideFFI"], path: "Sources/Curbside", exclude: ["README.md"]),
        .target(name: "CurbsideSample", dependencies: ["Curbside"], path: "Sources/CurbsideSample"),
    ]
)
