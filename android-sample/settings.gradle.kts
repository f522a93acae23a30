// The Android sample: `shared` is the platform-free layer (repository and view-model logic over
// the Kotlin bindings, with Flow), which CI compiles with kotlinc and runs on the JVM against a
// live server; `app` is the Compose app around it (needs the Android SDK: not on the CI machine).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
plugins {
    // Fetches the JDK 17 toolchain `shared` asks for when the machine has another.
    id("org.gradle.toolchains.foojay-resolver-convention") version "0.9.0"
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
        // The Kotlin half of rustls-platform-verifier (Android's certificate verifier for the
        // library's HTTPS), published by its authors.
        maven { url = uri("https://github.com/rustls/rustls-platform-verifier/raw/maven-archive/android-release-support/maven/") }
    }
}
rootProject.name = "curbside-sample"
include(":shared", ":app")
