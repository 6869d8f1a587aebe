// TEST STAND-IN (see main.go): the Prometheus metrics of mattermost-push-proxy, with its
// metric names and labels, on the default registry (so go_* and process_* appear too).
package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	notificationsTotal   *prometheus.CounterVec
	byAppVersion         *prometheus.CounterVec
	success              *prometheus.CounterVec
	successWithAck       *prometheus.CounterVec
	failure              *prometheus.CounterVec
	failureWithReason    *prometheus.CounterVec
	removal              *prometheus.CounterVec
	badRequest           prometheus.Counter
	apnsResponse         prometheus.Histogram
	fcmResponse          prometheus.Histogram
	notificationResponse *prometheus.HistogramVec
	serviceResponse      prometheus.Histogram
	all                  []prometheus.Collector
}

// The real proxy (6.5.0) also counts acks in service_delivered_total but never registers
// that counter, so it does not appear on /metrics; it is left out here for the same result.
func newMetrics() *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help})
	}
	m := &metrics{
		notificationsTotal: counter("service_notifications_total", "Number of notifications sent", "platform", "type", "transport"),
		byAppVersion: counter("service_notifications_by_app_version_total",
			"Number of notifications sent, by reported app version. A version of 1 indicates a client that did not report an app version.",
			"platform", "app_version"),
		success:           counter("service_success_total", "Number of push success.", "platform", "type", "transport"),
		successWithAck:    counter("service_success_with_ack_total", "Number of push success that contains ackId.", "platform", "type", "transport"),
		failure:           counter("service_failure_total", "Number of push errors.", "platform", "type", "transport"),
		failureWithReason: counter("service_failure_with_reason_total", "Number of push errors with reasons.", "platform", "type", "transport", "reason"),
		removal:           counter("service_removal_total", "Number of device token errors.", "platform", "transport", "reason"),
		badRequest: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service_bad_request_total", Help: "Request to push proxy was a bad request"}),
		apnsResponse: histogram("service_apns_request_duration_seconds", "Request latency distribution"),
		fcmResponse:  histogram("service_fcm_request_duration_seconds", "Request latency distribution"),
		notificationResponse: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "service_notification_duration_seconds", Help: "Notifiction request latency distribution"}, []string{"platform"}),
		serviceResponse: histogram("service_request_duration_seconds", "Request latency distribution"),
	}
	m.all = []prometheus.Collector{m.notificationsTotal, m.byAppVersion, m.success, m.successWithAck, m.failure,
		m.failureWithReason, m.removal, m.badRequest, m.apnsResponse, m.fcmResponse, m.serviceResponse, m.notificationResponse}
	prometheus.MustRegister(m.all...)
	return m
}

func (m *metrics) shutdown() {
	for _, c := range m.all {
		prometheus.Unregister(c)
	}
}

func (m *metrics) notification(platform, pushType, transport string) {
	m.notificationsTotal.WithLabelValues(platform, pushType, transport).Inc()
}

// appVersion: the real proxy labels 1 and 2 and folds everything else into "other".
func (m *metrics) notificationByAppVersion(platform string, appVersion int) {
	label := "other"
	if appVersion == 1 || appVersion == 2 {
		label = strconv.Itoa(appVersion)
	}
	m.byAppVersion.WithLabelValues(platform, label).Inc()
}

func (m *metrics) succeeded(platform, pushType, transport string, withAck bool) {
	m.success.WithLabelValues(platform, pushType, transport).Inc()
	if withAck {
		m.successWithAck.WithLabelValues(platform, pushType, transport).Inc()
	}
}

func (m *metrics) observeNotification(platform string, seconds float64) {
	m.notificationResponse.WithLabelValues(platform).Observe(seconds)
	switch platform {
	case "apple":
		m.apnsResponse.Observe(seconds)
	case "android":
		m.fcmResponse.Observe(seconds)
	}
}
