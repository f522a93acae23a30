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
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "curbside-sample"
include(":shared", ":app")
