// The types every dashboard in dashboards/ must satisfy: @grafana/schema's `Dashboard` and, per panel type, the
// panel plugin's options and field config, written as JSON:
// - string enums (ThresholdsMode, FieldColorModeId, MappingType, ...) as their string values: JSON has no enums;
// - panel options and custom field config partial (Grafana fills in the defaults) but never unknown: check.mjs
//   writes each dashboard and each panel as a fresh object literal, so a misspelt or unknown key is an error;
// - every panel and every query on the `${datasource}` template variable, every query a PromQL `expr`.
import type { Dashboard, Panel, RowPanel } from '@grafana/schema';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as StateTimeline from '@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** `T` as JSON writes it: string enums become their values. */
export type Json<T> = T extends string
  ? string extends T
    ? string
    : `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** Every key optional, at every depth; unknown keys still rejected. */
export type DeepPartial<T> = T extends ReadonlyArray<infer U>
  ? Array<DeepPartial<U>>
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** The dashboard's Prometheus data source variable. */
export type DatasourceVar = { type: 'prometheus'; uid: '${datasource}' };

/** A Prometheus query as Grafana's Prometheus data source stores it. */
export interface PromQuery {
  refId: string;
  datasource: DatasourceVar;
  expr: string;
  legendFormat?: string;
  editorMode?: 'code' | 'builder';
  format?: 'time_series' | 'table' | 'heatmap';
  instant?: boolean;
  range?: boolean;
  interval?: string;
  intervalFactor?: number;
  exemplar?: boolean;
  hide?: boolean;
}

type JsonPanel = Json<Panel>;
type FieldDefaults = Omit<NonNullable<JsonPanel['fieldConfig']>['defaults'], 'custom'>;
type Overrides = NonNullable<JsonPanel['fieldConfig']>['overrides'];

/** A data panel of plugin `Type` with that plugin's `Options` and custom field config `Custom`. */
export type DataPanel<Type extends string, Options, Custom = Record<string, never>> = Omit<
  JsonPanel,
  'type' | 'datasource' | 'targets' | 'options' | 'fieldConfig'
> & {
  type: Type;
  datasource: DatasourceVar;
  targets: PromQuery[];
  options: DeepPartial<Json<Options>>;
  fieldConfig: {
    defaults: FieldDefaults & { custom?: DeepPartial<Json<Custom>> };
    overrides: Overrides;
  };
};

/** The panel types the gpucost dashboards use, by `type`. */
export interface Panels {
  stat: DataPanel<'stat', Stat.Options>;
  timeseries: DataPanel<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>;
  bargauge: DataPanel<'bargauge', BarGauge.Options>;
  table: DataPanel<'table', Table.Options, Table.FieldConfig>;
  'state-timeline': DataPanel<'state-timeline', StateTimeline.Options, StateTimeline.FieldConfig>;
  row: Json<RowPanel>;
}

/** A whole dashboard, as exported for sharing minus `__inputs`/`__requires`. */
export type DashboardJson = Json<Dashboard>;
