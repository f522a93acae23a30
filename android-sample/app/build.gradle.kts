plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("org.jetbrains.kotlin.plugin.compose")
}

/** The version of rustls-platform-verifier-android in the workspace's Cargo.lock: its Kotlin
 *  half must be the same version as the Rust half linked into libcurbside_ffi.so. */
abstract class RustlsVersion : ValueSource<String, RustlsVersion.Params> {
    interface Params : ValueSourceParameters {
        val lockFile: RegularFileProperty
    }

    override fun obtain(): String {
        val lines = parameters.lockFile.get().asFile.readLines()
        val at = lines.indexOfFirst { it.trim() == "name = \"rustls-platform-verifier-android\"" }
        check(at >= 0) { "rustls-platform-verifier-android is not in Cargo.lock" }
        return lines.drop(at + 1).first { it.trimStart().startsWith("version = ") }
            .substringAfter('"').substringBefore('"')
    }
}

val rustlsVerifierVersion = providers.of(RustlsVersion::class.java) {
    parameters.lockFile.set(rootProject.layout.projectDirectory.file("../Cargo.lock"))
}

android {
    namespace = "org.curbside.sample.app"
    compileSdk = 35
    defaultConfig {
        applicationId = "org.curbside.sample"
        // 28: ImageDecoder (HEIF photos decoded by the platform).
        minSdk = 28
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        val local = java.util.Properties().apply {
            rootProject.file("local.properties").takeIf { it.exists() }?.inputStream()?.use { load(it) }
        }
        // The Maps key and the city's server, from local.properties (not committed).
        manifestPlaceholders["MAPS_API_KEY"] = local.getProperty("MAPS_API_KEY", "")
        buildConfigField("String", "CURBSIDE_SERVER", "\"${local.getProperty("CURBSIDE_SERVER", "https://311.example.org")}\"")
    }
    buildFeatures {
        compose = true
        buildConfig = true
    }
    // scripts/build-android.sh writes libcurbside_ffi.so for arm64-v8a, armeabi-v7a and x86_64;
    // CurbsideTls.kt (bindings/android) hands the library's TLS verifier the app's Context.
    sourceSets["main"].jniLibs.srcDir("../../target/android/jniLibs")
    sourceSets["main"].java.srcDir("../../bindings/android")
    buildTypes {
        release {
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation(project(":shared"))
    implementation("net.java.dev.jna:jna:5.15.0@aar")
    implementation(platform("androidx.compose:compose-bom:2024.12.01"))
    implementation("androidx.compose.material3:material3")
    implementation("androidx.compose.ui:ui")
    implementation("androidx.activity:activity-compose:1.9.3")
    implementation("androidx.lifecycle:lifecycle-viewmodel-compose:2.8.7")
    implementation("androidx.lifecycle:lifecycle-runtime-compose:2.8.7")
    implementation("androidx.work:work-runtime-ktx:2.10.0")
    implementation("com.google.android.gms:play-services-location:21.3.0")
    // The map-pin fallback; the Maps API key goes in local.properties (MAPS_API_KEY=…).
    implementation("com.google.maps.android:maps-compose:6.4.1")
    implementation("rustls:rustls-platform-verifier:${rustlsVerifierVersion.get()}")
}
