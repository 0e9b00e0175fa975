// A no-op controller written the way a platform team would write its own, with controller-runtime:
// it sets status.state of every VideoAnalyzerAccount to Active and does nothing else. bench/scale.py
// runs it beside the operator as a baseline (the operator's work minus keys, vaults and Secrets).
package main

import (
	"context"
	"flag"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

var account = schema.GroupVersionKind{Group: "videoanalyzer.io", Version: "v1alpha1", Kind: "VideoAnalyzerAccount"}

type reconciler struct{ client.Client }

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(account)
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil { // from the informer cache
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if state, _, _ := unstructured.NestedString(obj.Object, "status", "state"); state == "Active" {
		return ctrl.Result{}, nil
	}
	before := obj.DeepCopy()
	if err := unstructured.SetNestedField(obj.Object, "Active", "status", "state"); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.Status().Patch(ctx, obj, client.MergeFrom(before))
}

func main() {
	namespace := flag.String("namespace", "", "watch only this namespace (default: all)")
	workers := flag.Int("workers", 8, "concurrent reconciles (the operator's default)")
	flag.Parse()
	config := ctrl.GetConfigOrDie()
	// client-go throttles to 20 requests/s by default; Kopf and the operator do not throttle.
	config.QPS, config.Burst = 1000, 2000
	options := ctrl.Options{Metrics: metricsserver.Options{BindAddress: "0"}}
	if *namespace != "" {
		options.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}}
	}
	manager, err := ctrl.NewManager(config, options)
	if err != nil {
		panic(err)
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(account)
	err = ctrl.NewControllerManagedBy(manager).
		For(obj).
		WithOptions(controller.Options{MaxConcurrentReconciles: *workers}).
		Complete(&reconciler{manager.GetClient()})
	if err != nil {
		panic(err)
	}
	if err := manager.Start(ctrl.SetupSignalHandler()); err != nil {
		os.Exit(1)
	}
}
