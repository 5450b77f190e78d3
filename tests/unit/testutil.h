/* Helpers shared by the unit tests: throwaway directories and tenant files. */
#ifndef REFEREE_TESTUTIL_H
#define REFEREE_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Makes /tmp/rf-test-<name>-XXXXXX into dir (at least 64 bytes); fails the
 * test when it cannot. */
#define RF_TEST_MKDIR(dir, name)                                               \
    do {                                                                       \
        snprintf((dir), 64, "/tmp/rf-test-%s-XXXXXX", (name));                 \
        assert_non_null(mkdtemp(dir));                                         \
    } while (0)

/* Makes dir/id and opens dir/id/tenant.lua for writing; fails the test
 * when it cannot. The caller writes the file and closes it. */
#define RF_TEST_TENANT_FILE(f, dir, id)                                        \
    do {                                                                       \
        char path_[256];                                                       \
        snprintf(path_, sizeof(path_), "%s/%s", (dir), (id));                  \
        mkdir(path_, 0700);                                                    \
        snprintf(path_, sizeof(path_), "%s/%s/tenant.lua", (dir), (id));       \
        (f) = fopen(path_, "w");                                               \
        assert_non_null(f);                                                    \
    } while (0)

/* Removes a directory made by RF_TEST_MKDIR and everything in it. */
#define RF_TEST_RMDIR(dir)                                                     \
    do {                                                                       \
        char cmd_[128];                                                        \
        snprintf(cmd_, sizeof(cmd_), "rm -rf %s", (dir));                      \
        assert_int_equal(system(cmd_), 0);                                     \
    } while (0)

#endif
