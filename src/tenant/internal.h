/* Shared between the files of the tenant module. */
#ifndef REFEREE_TENANT_INTERNAL_H
#define REFEREE_TENANT_INTERNAL_H

#include "referee/reader.h"
#include "referee/tenant.h"

/* Reads the `sources` table of the settings at the top of r->L. */
int rf__tenant_read_sources(struct rf_reader *r, struct rf_tenant *t);

#endif
