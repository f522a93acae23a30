package org.curbside.sample.app

import android.content.Context
import androidx.work.BackoffPolicy
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.ExistingWorkPolicy
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import kotlinx.coroutines.CancellationException
import org.curbside.ApiException
import org.curbside.SyncCancel
import java.util.concurrent.TimeUnit

/**
 * Background sync with WorkManager: only with a network, exponential backoff on failure, every
 * 15 minutes, and once right after the user submits. WorkManager stopping the work cancels the
 * coroutine, which cancels the sync between its steps; nothing is lost.
 */
class SyncWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {
    override suspend fun doWork(): Result {
        val repo = (applicationContext as CurbsideApplication).repository
        return try {
            repo.ensureRegistered(BuildConfig.CURBSIDE_SERVER)
            repo.sync(SyncCancel())
            Result.success()
        } catch (e: ApiException.Network) {
            Result.retry()
        } catch (e: ApiException.Conflict) {
            // Another sync is running: it does the work.
            Result.success()
        } catch (e: CancellationException) {
            throw e
        } catch (e: ApiException) {
            Result.retry()
        }
    }

    companion object {
        private val online = Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build()

        fun schedule(context: Context) {
            val periodic = PeriodicWorkRequestBuilder<SyncWorker>(15, TimeUnit.MINUTES)
                .setConstraints(online)
                .setBackoffCriteria(BackoffPolicy.EXPONENTIAL, 30, TimeUnit.SECONDS)
                .build()
            WorkManager.getInstance(context)
                .enqueueUniquePeriodicWork("curbside-sync", ExistingPeriodicWorkPolicy.KEEP, periodic)
        }

        /** After a submit: as soon as there is a network. */
        fun now(context: Context) {
            val once = OneTimeWorkRequestBuilder<SyncWorker>()
                .setConstraints(online)
                .setBackoffCriteria(BackoffPolicy.EXPONENTIAL, 30, TimeUnit.SECONDS)
                .build()
            WorkManager.getInstance(context).enqueueUniqueWork("curbside-sync-now", ExistingWorkPolicy.REPLACE, once)
        }
    }
}
