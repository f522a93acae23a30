// The bindings' callbacks as Kotlin flows: what the screens collect.
package org.curbside.sample

import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import org.curbside.ChangeListener
import org.curbside.CurbsideStore
import org.curbside.RequestChange

/**
 * Every commit's changed requests, local edits and synced changes alike. The listener is called
 * on the thread that wrote (a sync's thread for what sync brings): the flow hands the changes
 * over without blocking it, and stops listening when its collector goes away.
 */
fun CurbsideStore.changes(): Flow<List<RequestChange>> = callbackFlow {
    val handle = addListener(object : ChangeListener {
        override fun onChange(changes: List<RequestChange>) {
            trySend(changes)
        }
    })
    awaitClose { removeListener(handle) }
}.buffer(Channel.UNLIMITED)
