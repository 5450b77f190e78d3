/* Writing JSON values: printed into a buffer kept per thread, so a batch
 * of puts does not allocate and grow a string for each value. */
#include "referee/error.h"
#include "referee/store.h"

#include <stdlib.h>
#include <string.h>

#define BUF_SIZE (64 * 1024)

static _Thread_local char buf[BUF_SIZE];

int rf_store_put_json(MDB_txn *txn, MDB_dbi dbi, const void *key,
                      size_t klen, const cJSON *v, unsigned flags)
{
    MDB_val k = {klen, (void *)key}, d;
    char *text = NULL;
    int rc;

    /* cJSON wants a few bytes to spare beyond the text. */
    if (cJSON_PrintPreallocated((cJSON *)v, buf, BUF_SIZE - 8, 0)) {
        d.mv_data = buf;
    } else if ((text = cJSON_PrintUnformatted(v)) != NULL) {
        d.mv_data = text;
    } else {
        return RF_ENOMEM;
    }
    d.mv_size = strlen(d.mv_data);
    rc = rf_store_rc(mdb_put(txn, dbi, &k, &d, flags));
    cJSON_free(text);
    return rc;
}
