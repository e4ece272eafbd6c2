/*
 * payh.h — what the gateway's payment tests share (gateway_payment*_test.c):
 * a booking with seats, starting its payment, the buyer's click on the
 * sandbox's page, webhooks signed as the sandbox signs them, and bounded
 * waits for what the webhook changes.  Every helper asserts, from the test's
 * main thread.
 */
#ifndef TIXGRID_TEST_INTEGRATION_PAYH_H
#define TIXGRID_TEST_INTEGRATION_PAYH_H

#include "gwh.h"

/* Bound of the waits for a webhook's effect, in ms. */
#define PAYH_WAIT_MS 10000

/* A payment id and its NUL (the gateway takes 1..128 bytes). */
#define PAYH_ID_BYTES 129

/* A new booking of the demo concert holding seat_no s (and s + 1 when two). */
uint64_t payh_booking_with_seats(gwh_gateway *gw, const char *auth, uint32_t s, uint32_t count);

/* PATCH /api/bookings/initiatePayment; the response (status not asserted). */
gwh_resp *payh_initiate(gwh_gateway *gw, const char *auth, uint64_t booking);

/* The path of the payment's page on the sandbox ("/pay/<id>"). */
const char *payh_page_path(const char *payment_url);

/* The buyer clicks Approve (or Decline) on the sandbox page; asserts the
 * 303 and returns its Location. */
const char *payh_click(gwh_gateway *sandbox, const char *payment_id, bool approve);

/* A webhook body {paymentId, status, timestamp} and its signature under
 * secret (hex). */
const char *payh_webhook_body(const char *payment_id, const char *status);
const char *payh_sign(const char *secret, const char *body);

/* POST /api/webhook/payment with X-Signature (omitted when NULL). */
gwh_resp *payh_webhook(gwh_gateway *gw, const char *body, const char *signature);

/* Waits until GET /api/bookings/{id} says status. */
void payh_wait_booking(gwh_gateway *gw, const char *auth, uint64_t booking, const char *status);

/* Waits until the browser's return (the gateway path of the provider's
 * redirect) shows status: the webhook records the payment just after it
 * changed the booking.  Returns the answer. */
json_t *payh_wait_return(gwh_gateway *gw, const char *location, const char *status);

/* The status of seat_no s of the concert (GET /api/seats). */
const char *payh_seat_status(gwh_gateway *gw, const char *auth, uint32_t s);

/* Waits until the SQL's single text answer is want (PostgreSQL written behind). */
void payh_wait_pg(gwh_grid *g, const char *sql, const char *want);

/* The query of booking's audit trail, "action:outcome[:who],..." in order,
 * for the records filter (SQL, e.g. "action LIKE 'payment%'") keeps; who:
 * the client IP, or "system".  The text lives until the next call. */
const char *payh_audit_sql(uint64_t booking, const char *filter, bool who);

#endif
